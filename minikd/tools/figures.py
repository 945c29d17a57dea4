"""``minikd figures``: run every tutorial, in order, to regenerate the figures they save.

Each tutorial runs as its own process (a fresh interpreter, the Agg backend) with
``MINIKD_FIGURES`` pointing at the output folder. The figures are deterministic: the same code and
seed give the same PNG files on the same machine.
"""

import os
import subprocess
import sys
import time

TUTORIALS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tutorials")


def tutorial_paths(folder=TUTORIALS, only=None):
    """The tutorial scripts in ``folder`` in reading order; ``only`` keeps names starting with it."""
    if not os.path.isdir(folder):
        raise ValueError(f"tutorials folder {folder!r} not found: run from a source checkout of minikd "
                         "or pass --tutorials DIR")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".py") and n[:2].isdigit())
    if only is not None:
        names = [n for n in names if n.startswith(only)]
        if not names:
            raise ValueError(f"no tutorial in {folder!r} starts with {only!r}")
    return [os.path.join(folder, n) for n in names]


def run(out="figures", folder=TUTORIALS, fast=False, only=None, runs=None, out_fn=print):
    """Run the tutorials; returns {tutorial name: seconds}. A failing tutorial raises a RuntimeError."""
    paths = tutorial_paths(folder, only)
    env = {**os.environ, "MINIKD_FIGURES": os.path.abspath(out), "MPLBACKEND": "Agg",
           "MINIKD_FAST": "1" if fast else "0"}
    if runs is not None:
        env["MINIKD_RUNS"] = os.path.abspath(runs)
    os.makedirs(out, exist_ok=True)
    times = {}
    for path in paths:
        name = os.path.basename(path)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, path], env=env, capture_output=True, text=True)
        times[name] = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"tutorial {name} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        out_fn(f"{name:40s} {times[name]:6.1f} s")
    out_fn(f"figures in {os.path.abspath(out)}; {sum(times.values()):.0f} s in all")
    return times


def add_commands(commands):
    """``minikd figures``."""
    parser = commands.add_parser("figures", help="run every tutorial to regenerate the figures")
    parser.add_argument("--out", default="figures", help="folder for the PNG files")
    parser.add_argument("--fast", action="store_true", help="the tutorials' fast mode (small sizes)")
    parser.add_argument("--only", metavar="PREFIX", help="only tutorials whose file name starts with PREFIX")
    parser.add_argument("--tutorials", metavar="DIR", default=TUTORIALS, help="the tutorials folder")
    parser.add_argument("--runs", metavar="DIR", help="folder for the tutorials' training runs (default: runs/tutorials)")
    parser.set_defaults(run=_command)


def _command(args):
    try:
        run(args.out, folder=args.tutorials, fast=args.fast, only=args.only, runs=args.runs)
    except RuntimeError as err:
        print(f"minikd: {err}", file=sys.stderr)
        return 1
    return 0
