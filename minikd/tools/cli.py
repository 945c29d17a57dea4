"""The ``minikd`` command line: one entry point that collects the subcommands.

Each subcommand is defined beside the code it runs, by an ``add_commands(commands)`` function in
that module: its own small parser, defaults taken from the config dataclasses, choices from the
module that owns them, and ``set_defaults(run=...)`` naming the function that carries it out.
"""

import argparse
import sys
from importlib.metadata import version

from minikd.engine import backend
from minikd.recipes import launch, train, weak_to_strong
from minikd.tools import bench, check, demo, evaluate, figures, generate, landscape_command

COMMAND_MODULES = (check, demo, train, launch, weak_to_strong, generate, evaluate, figures, landscape_command, bench)


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
    """Run one command; a ValueError (bad input) is printed as ``minikd: error: ...`` with exit code 2."""
    args = parser().parse_args(argv)
    try:
        if args.backend:
            backend.use(args.backend)
        args.malloc_tuned = False if args.default_malloc else backend.reuse_freed_memory()
        return args.run(args)
    except ValueError as err:
        print(f"minikd: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
