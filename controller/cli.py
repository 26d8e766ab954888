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
from dataclasses import dataclass

from controller import __version__, commands, config, logs
from controller.exitcodes import EPILOG, EXIT_NO_PERMISSION

Command = Callable[[argparse.Namespace], int]
AddArgs = Callable[[argparse.ArgumentParser, dict[str, str]], None]
_PARSERS: dict[str, argparse.ArgumentParser] = {}
__all__ = ["COMMANDS", "EXIT_NO_PERMISSION", "Subcommand", "build_parser", "main"]


@dataclass(frozen=True)
class Subcommand:
    """One ``podstore`` subcommand: its name, help, own flags and body (in commands.py)."""

    name: str
    help: str
    add_args: AddArgs
    run: Command


# Every subcommand, in the order ``podstore --help`` lists them.
COMMANDS: tuple[Subcommand, ...] = (
    Subcommand("agent", "run the operator for one node", commands.agent_args, commands.agent),
    Subcommand(
        "run",
        "reconcile StoragePod/StorageContainer manifests without a cluster",
        commands.run_args,
        commands.run,
    ),
    Subcommand(
        "ps", "list the containers podstore keeps in the store", commands.ps_args, commands.ps
    ),
    Subcommand(
        "pods", "list the pods podstore keeps in the store", commands.pods_args, commands.pods
    ),
    Subcommand("images", "list the images in the store", commands.images_args, commands.images),
    Subcommand(
        "inspect",
        "show everything the store holds about one container or pod",
        commands.inspect_args,
        commands.inspect,
    ),
    Subcommand(
        "version",
        "show the versions of podstore and of the tools it runs",
        commands.version_args,
        commands.version,
    ),
    Subcommand(
        "info",
        "show the store's paths, driver, disk usage and tool versions",
        commands.info_args,
        commands.info,
    ),
    Subcommand(
        "rm",
        "remove containers podstore made (not a pod's infra container)",
        commands.rm_args,
        commands.rm,
    ),
    Subcommand(
        "rmp",
        "remove pods podstore made: their containers, then the infra",
        commands.rmp_args,
        commands.rmp,
    ),
    Subcommand(
        "rmi", "remove images no container in the store uses", commands.rmi_args, commands.rmi
    ),
)


def build_parser(environ: dict[str, str] | None = None) -> argparse.ArgumentParser:
    env = config.environ_snapshot(environ)
    parser = argparse.ArgumentParser(
        prog="podstore",
        description="Pods and containers kept in containers/storage, driven by Kubernetes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"podstore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS:
        name = cmd.name
        p = sub.add_parser(
            name,
            help=cmd.help,
            description=cmd.help,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        config.add_store_arguments(p, env)
        cmd.add_args(p, env)
        p.set_defaults(func=cmd.run)
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
