"""The node-side commands (run, ps, pods, images, inspect) register here.

Each one parses its flags, builds the storage services on the store that
``--root``/``--runroot``/``--driver`` name, and calls into
``controller.manifest``; none of them talks to an API server.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Mapping

from controller import config
from controller.cli import command
from controller.manifest import output
from controller.manifest.inventory import Inventory, NotFound
from controller.storage import ImageService, RuntimeService, Store
from controller.storage.errors import StorageError

log = logging.getLogger("podstore")


def default_node_name(environ: Mapping[str, str]) -> str:
    """PODSTORE_NODE_NAME, else the host name made into a DNS name (as the kubelet does)."""
    given = environ.get(config.ENV_PREFIX + "NODE_NAME")
    if given:
        return given
    host = socket.gethostname().lower()
    return re.sub(r"[^a-z0-9.-]+", "-", host).strip("-.") or "localhost"


def _settings(args: argparse.Namespace) -> config.Settings:
    """Settings from the flags, with the store's folders made absolute."""
    settings = config.settings_from_args(args)
    return dataclasses.replace(
        settings,
        root=os.path.abspath(settings.root),
        run_root=os.path.abspath(settings.run_root),
    )


def _output_arg(parser: argparse.ArgumentParser, *choices: str) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=choices,
        default=choices[0],
        help=f"output format ({', '.join(choices)})",
    )


# -- run ---------------------------------------------------------------------------


def _run_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        required=True,
        metavar="PATH",
        help="a manifest file, or a folder of .yaml/.yml/.json files; repeatable",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="reconcile until everything settled, print the resources and exit "
        "(non-zero if any failed); without it, keep watching PATH",
    )
    _output_arg(parser, "table", "json")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="--once: seconds retries may go on before giving up (default 120)",
    )
    parser.add_argument(
        "--node-name",
        default=default_node_name(env),
        help="this node's name: StoragePods without spec.nodeName get it, others must "
        "name it (env PODSTORE_NODE_NAME; default: the host name)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        help="seconds between two looks at PATH while watching (default 1)",
    )
    config.add_reconciler_arguments(parser, env)


@command("run", "reconcile StoragePod/StorageContainer manifests without a cluster", _run_args)
def run(args: argparse.Namespace) -> int:
    # The manifest mode reads the CRDs (jsonschema); the other commands need not.
    from controller.manifest.run import RunOptions, StopFlag
    from controller.manifest.run import run as run_manifests

    options = RunOptions(
        paths=tuple(args.paths),
        once=args.once,
        output=args.output,
        timeout=args.timeout,
        poll_interval=max(args.poll_interval, 0.05),
    )
    stop = StopFlag()
    with stop.installed():
        return run_manifests(_settings(args), options, stop=stop)


# -- ps, pods, images, inspect ---------------------------------------------------------


def _inventory(args: argparse.Namespace) -> Inventory:
    settings = _settings(args)
    store = Store(
        settings.root, settings.run_root, settings.driver, timeout=settings.command_timeout
    )
    return Inventory(RuntimeService(ImageService(store)))


def _ps_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    _output_arg(parser, "table", "json")
    parser.add_argument(
        "-a", "--all", dest="all_", action="store_true", help="show infra containers too"
    )
    parser.add_argument("--pod", default="", help="only this pod's (name, ID or ID prefix)")
    parser.add_argument("-n", "--namespace", default="", help="only this namespace's")
    parser.add_argument("-q", "--quiet", action="store_true", help="print the IDs only")


@command("ps", "list the containers podstore keeps in the store", _ps_args)
def ps(args: argparse.Namespace) -> int:
    def show(inv: Inventory) -> str:
        views = inv.ps(pod=args.pod, namespace=args.namespace, all_=args.all_)
        if args.quiet:
            return "\n".join(v.record.id for v in views)
        if args.output == "json":
            return output.to_json([v.to_json() for v in views])
        now = time.time()
        rows = [
            [
                output.short_id(v.record.id),
                v.record.metadata.image_name,
                output.age_since(v.record.metadata.created_at, now),
                "yes" if v.mounted else "no",
                "(infra)" if v.record.infra else v.record.metadata.metadata_name,
                v.pod,
                v.record.metadata.namespace,
                output.short_id(v.record.metadata.pod_id),
            ]
            for v in views
        ]
        headers = ("CONTAINER", "IMAGE", "CREATED", "MOUNTED", "NAME", "POD", "NAMESPACE", "POD ID")
        return output.table(headers, rows)

    return _show(args, show)


def _pods_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    _output_arg(parser, "table", "json")
    parser.add_argument("--name", default="", help="only the pod of this name")
    parser.add_argument("-n", "--namespace", default="", help="only this namespace's")
    parser.add_argument("-q", "--quiet", action="store_true", help="print the pod IDs only")


@command("pods", "list the pods podstore keeps in the store", _pods_args)
def pods(args: argparse.Namespace) -> int:
    def show(inv: Inventory) -> str:
        found = inv.pods(namespace=args.namespace, name=args.name)
        if args.quiet:
            return "\n".join(p.infra.record.id for p in found)
        if args.output == "json":
            return output.to_json([p.to_json() for p in found])
        now = time.time()
        rows = [
            [
                output.short_id(p.infra.record.id),
                p.infra.record.metadata.metadata_name,
                p.infra.record.metadata.namespace,
                p.infra.record.metadata.attempt,
                p.containers,
                output.age_since(p.infra.record.metadata.created_at, now),
            ]
            for p in found
        ]
        headers = ("POD ID", "NAME", "NAMESPACE", "ATTEMPT", "CONTAINERS", "CREATED")
        return output.table(headers, rows)

    return _show(args, show)


def _images_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    _output_arg(parser, "table", "json")
    parser.add_argument("-q", "--quiet", action="store_true", help="print the image IDs only")


@command("images", "list the images in the store", _images_args)
def images(args: argparse.Namespace) -> int:
    def show(inv: Inventory) -> str:
        found = inv.images()
        if args.quiet:
            return "\n".join(i["id"] for i in found)
        if args.output == "json":
            return output.to_json(found)
        rows = [
            [
                output.short_id(i["id"]),
                i["names"][0] if i["names"] else "",
                output.size(i["size"]),
                i["containers"],
            ]
            for i in found
        ]
        return output.table(("IMAGE ID", "NAME", "SIZE", "CONTAINERS"), rows)

    return _show(args, show)


def _inspect_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    _output_arg(parser, "json")
    parser.add_argument(
        "id_or_name",
        metavar="ID_OR_NAME",
        help="a container or pod: ID, ID prefix, name in the store, or resource name "
        "([NAMESPACE/]NAME)",
    )


@command("inspect", "show everything the store holds about one container or pod", _inspect_args)
def inspect(args: argparse.Namespace) -> int:
    def show(inv: Inventory) -> str:
        return output.to_json(inv.inspect(args.id_or_name))

    return _show(args, show)


def _show(args: argparse.Namespace, show: Callable[[Inventory], str]) -> int:
    """Run a read-only command: print what ``show`` makes of the store, or the error."""
    try:
        text = show(_inventory(args))
    except NotFound as err:
        print(f"podstore {args.command}: {err.args[0]}", file=sys.stderr)
        return 1
    except StorageError as err:
        print(f"podstore {args.command}: {err}", file=sys.stderr)
        return 1
    if text:
        print(text)
    return 0
