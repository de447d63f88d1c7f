"""The ``ptjaas`` command.

Its subcommands come from the ``ptjaas.commands`` entry points: each names a function that adds
one subcommand to an ``argparse`` subparsers object. ptjaas itself registers the production
commands; the sandbox distribution part (``ptjaas_sandbox``: ``cluster``, ``demo``) registers its
own, and where it is not installed (the hub image) they are simply absent.
"""

import argparse
import logging
import sys
from importlib.metadata import entry_points

from . import __version__


def _commands():
    found = []
    for ep in sorted(entry_points(group="ptjaas.commands"), key=lambda e: e.name):
        try:
            found.append(ep.load())
        except ImportError:  # a part of the distribution that is not installed here
            continue
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ptjaas", description="Jupyter-as-a-Service on Kubernetes")
    parser.add_argument("--version", action="version", version=f"ptjaas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add_command in _commands():
        add_command(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)1.1s %(asctime)s %(name)s] %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
