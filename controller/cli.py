"""The ``podstore`` command line.

``podstore agent`` runs the operator for one node; ``podstore run`` runs the
same reconciler from manifest files; ``ps``, ``pods``, ``images`` and
``inspect`` show what podstore keeps in the node's store.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable, Sequence

from controller import __version__, config, logs
from controller.exitcodes import EPILOG, EXIT_NO_PERMISSION

Command = Callable[[argparse.Namespace], int]
AddArgs = Callable[[argparse.ArgumentParser, dict[str, str]], None]
_COMMANDS: dict[str, tuple[str, AddArgs, Command]] = {}
_PARSERS: dict[str, argparse.ArgumentParser] = {}
__all__ = ["EXIT_NO_PERMISSION", "build_parser", "command", "main"]


def command(name: str, help_: str, add_args: AddArgs) -> Callable[[Command], Command]:
    """Register a subcommand: its help, its own flags and its function."""

    def register(func: Command) -> Command:
        _COMMANDS[name] = (help_, add_args, func)
        return func

    return register


def _agent_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    config.add_reconciler_arguments(parser, env)
    config.add_agent_arguments(parser, env)
    config.add_image_gc_arguments(parser, env, interval=True)


@command("agent", "run the operator for one node", _agent_args)
def agent(args: argparse.Namespace) -> int:
    from controller.handlers.connect import NotConnected, preflight
    from controller.handlers.operator import run  # kopf is imported only for the agent

    settings = config.settings_from_args(args)
    try:
        # A kubeconfig that cannot work is one line and an exit status, not kopf's retries.
        preflight(settings.kubeconfig, settings.node_name)
    except NotConnected as err:
        print(f"podstore agent: {err}", file=sys.stderr)
        return err.status
    run(settings)
    return 0


def build_parser(environ: dict[str, str] | None = None) -> argparse.ArgumentParser:
    env = config.environ_snapshot(environ)
    # Commands defined elsewhere register themselves on import.
    from controller import commands  # noqa: F401

    parser = argparse.ArgumentParser(
        prog="podstore",
        description="Pods and containers kept in containers/storage, driven by Kubernetes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"podstore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_, add_args, func) in _COMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        config.add_store_arguments(p, env)
        add_args(p, env)
        p.set_defaults(func=func)
        _PARSERS[name] = p
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra:
        # Named by the subcommand ("podstore ps: error: ..."), not by podstore alone.
        _PARSERS[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    problem = config.check_arguments(args)
    if problem:
        _PARSERS[args.command].error(problem)
    logs.setup(args.log_level, args.log_format)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except PermissionError as err:
        print(f"podstore {args.command}: {_permission_message(err)}", file=sys.stderr)
        return EXIT_NO_PERMISSION


def _permission_message(err: OSError) -> str:
    where = f" on {err.filename}" if err.filename else ""
    who = "root" if os.geteuid() != 0 else "the owner of the store"
    return (
        f"permission denied{where} ({errno.errorcode.get(err.errno or 0, 'EACCES')}): "
        f"run podstore as {who}"
    )


if __name__ == "__main__":
    sys.exit(main())
