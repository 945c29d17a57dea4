"""The ``minikd`` command line: one entry point that collects the subcommands.

Each subcommand is defined beside the code it runs, by an ``add_commands(commands)`` function in
that module: its own small parser, defaults taken from the config dataclasses, choices from the
module that owns them, and ``set_defaults(run=...)`` naming the function that carries it out.
"""

import argparse
import sys
import warnings
from importlib.metadata import version

from minikd.engine import backend
from minikd.recipes import launch, train, weak_to_strong
from minikd.recipes.checkpoint import CheckpointError
from minikd.recipes.run_folder import RunFolderError
from minikd.tools import bench, check, demo, evaluate, figures, generate, landscape_command
from minikd.tools.exercises import command as exercise

COMMAND_MODULES = (check, demo, train, launch, weak_to_strong, generate, evaluate, figures, landscape_command, bench,
                   exercise)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows every flag's default."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(**kwargs)


def parser():
    """The whole command line: global flags, then one subparser per command."""
    top = _Parser(prog="minikd", description="Knowledge distillation in NumPy/CuPy, to read and check.")
    top.add_argument("--version", action="version", version=f"minikd {version('minikd')}")
    top.add_argument("--backend", choices=backend.NAMES, help="array backend (default: $MINIKD_BACKEND or numpy)")
    top.add_argument("--default-malloc", action="store_true",
                     help="leave glibc's malloc as it is (by default freed buffers are kept for reuse; "
                          "see backend.reuse_freed_memory)")
    commands = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    return top


def main(argv=None):
    """Run one command; every failure is one line on stderr, never a traceback for a user's mistake.

    ``minikd <command>: error: ...`` with exit code 2 for a bad value (a ValueError or TypeError, as
    argparse does for a bad flag), 1 for a runtime failure (a damaged checkpoint, a taken run folder,
    the filesystem, memory, the backend); 130 after Ctrl-C. Warnings are one line too.
    """
    args = parser().parse_args(argv)
    prog = f"minikd {args.command}"
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *rest: print(f"{prog}: warning: {message}", file=sys.stderr)
        return _run(args, prog)


def _run(args, prog):
    try:
        if args.backend:
            backend.use(args.backend)
        elif backend.environment_error():
            raise RuntimeError(f"{backend.environment_error()}; fix MINIKD_BACKEND or pass --backend")
        backend.num_threads()  # checks MINIKD_NUM_THREADS before any work
        backend.limit_blas_threads()
        args.malloc_tuned = False if args.default_malloc else backend.reuse_freed_memory()
        return args.run(args)
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        kept = f"; {out} keeps its last checkpoint and finished results: continue with --resume" if out else ""
        print(f"{prog}: interrupted{kept}", file=sys.stderr)
        return 130
    except MemoryError as err:
        print(f"{prog}: error: out of memory{f' ({err})' if str(err) else ''}; choose smaller sizes", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"{prog}: error: {_describe(err, args)}", file=sys.stderr)
        return 1
    except (CheckpointError, RunFolderError, RuntimeError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


def _describe(err, args):
    """An OSError in one line naming its file; one raised while flushing names none, so name the output flag."""
    if err.filename:
        return f"{err.filename!r}: {err.strerror or err}"
    for flag in ("json", "out"):
        value = getattr(args, flag, None)
        if isinstance(value, str):
            return f"writing --{flag} {value!r}: {err.strerror or err}"
    return str(err.strerror or err)


if __name__ == "__main__":
    sys.exit(main())
