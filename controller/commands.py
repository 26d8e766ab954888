"""The node-side commands (run, ps, pods, images, inspect, info, version, rm,
rmp, rmi) register here.

Each one parses its flags, builds the storage services on the store that
``--root``/``--runroot``/``--driver`` name, and calls into
``controller.manifest``; none of them talks to an API server.

Before any of them runs ``containers-storage`` the store is looked at without
writing (:func:`check_store`): containers-storage makes the folders of a store
it is pointed at, and mounts the overlay driver's home, so a read-only command
pointed at a missing store, or given the wrong ``--driver``, would make a store
instead of reading one. Those are refused with one line and exit status 1; a
store the user may not write to (even reading takes its lock) is refused with
exit status 77; a store locked by another process is 75, a full disk 74
(``controller.exitcodes``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from controller import __version__, config, exitcodes
from controller.exitcodes import EXIT_NO_PERMISSION
from controller.manifest import output
from controller.manifest.inventory import STATES, Inventory, NotFound, parse_labels
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


class StoreRefused(Exception):
    """A store a command must not touch: missing, of another driver, or not the user's."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


#: What every containers/storage store has at its graph root, per driver.
_LAYOUT_SUFFIXES = ("-containers", "-images", "-layers")


def store_drivers(root: str) -> set[str]:
    """The drivers whose folders (``<driver>-containers``/``-images``/``-layers``) a
    graph root holds; read with one directory listing, nothing written."""
    try:
        entries = os.listdir(root)
    except OSError:
        return set()
    found = set()
    for entry in entries:
        for suffix in _LAYOUT_SUFFIXES:
            if entry.endswith(suffix) and os.path.isdir(os.path.join(root, entry)):
                found.add(entry[: -len(suffix)])
    return found


def _nearest_existing(path: str) -> str:
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_store(settings: config.Settings, *, must_exist: bool) -> None:
    """Refuse a store this command must not use; writes nothing, runs nothing.

    ``must_exist`` (the read-only and removal commands): the graph root and the run
    root must be there and the graph root must hold ``--driver``'s folders. Every
    command: the user must be able to write where the store is (containers-storage
    takes the store's lock even to read it).
    """
    root, run_root, driver = settings.root, settings.run_root, settings.driver
    for path in (root, run_root):
        where = _nearest_existing(path)
        if os.path.exists(where) and not os.access(where, os.W_OK | os.X_OK):
            raise StoreRefused(
                f"permission denied on {where} (owned by uid {os.stat(where).st_uid}): "
                "run podstore as root, or give --root/--runroot of a store of yours",
                EXIT_NO_PERMISSION,
            )
    drivers = store_drivers(root)
    if must_exist:
        if not os.path.isdir(root):
            raise StoreRefused(
                f"no store at {root}: give --root of an existing store "
                "(`podstore run` or the agent make one)"
            )
        if not drivers:
            raise StoreRefused(
                f"{root} is not a containers/storage store (no <driver>-containers, "
                "-images or -layers folders): give --root of an existing store"
            )
    if drivers and driver not in drivers:
        raise StoreRefused(
            f"the store at {root} uses the {', '.join(sorted(drivers))} driver, not "
            f"{driver!r}: give --driver {sorted(drivers)[0]}"
        )
    if must_exist and not os.path.isdir(run_root):
        raise StoreRefused(
            f"the store at {root} has no run root at {run_root}: give its --runroot "
            "(it is made again by `podstore run` or the agent after a reboot)"
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


def agent_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    config.add_reconciler_arguments(parser, env)
    config.add_agent_arguments(parser, env)
    config.add_image_gc_arguments(parser, env, interval=True)


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


def run_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
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
        "--dry-run",
        action="store_true",
        help="print what would be created, updated, started, stopped and removed; change nothing",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=1.0,
        help="seconds between two looks at PATH while watching (default 1)",
    )
    config.add_reconciler_arguments(parser, env)
    config.add_image_gc_arguments(parser, env)


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
        dry_run=args.dry_run,
    )
    settings = _settings(args)
    try:
        check_store(settings, must_exist=False)
    except StoreRefused as err:
        print(f"podstore run: {err}", file=sys.stderr)
        return err.status
    stop = StopFlag()
    with stop.installed():
        return run_manifests(settings, options, stop=stop)


# -- ps, pods, images, inspect ---------------------------------------------------------


def _inventory(args: argparse.Namespace) -> Inventory:
    settings = _settings(args)
    check_store(settings, must_exist=True)
    store = Store(
        settings.root, settings.run_root, settings.driver, timeout=settings.command_timeout
    )
    return Inventory(RuntimeService(ImageService(store)))


def _id(value: str, no_trunc: bool) -> str:
    return value if no_trunc else output.short_id(value)


def _no_trunc_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-trunc", action="store_true", help="show whole IDs")


def _label(value: str) -> tuple[str, str]:
    try:
        return parse_labels([value])[0]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def ps_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    _output_arg(parser, "table", "json", "yaml")
    parser.add_argument(
        "-a", "--all", dest="all_", action="store_true", help="show infra containers too"
    )
    parser.add_argument("--pod", default="", help="only this pod's (name, ID or ID prefix)")
    parser.add_argument("-n", "--namespace", default="", help="only this namespace's")
    parser.add_argument("-q", "--quiet", action="store_true", help="print the IDs only")
    parser.add_argument("--state", choices=STATES, default="", help="only containers in this state")
    parser.add_argument(
        "--label",
        dest="labels",
        action="append",
        type=_label,
        default=[],
        metavar="KEY=VALUE",
        help="only containers whose metadata labels hold KEY=VALUE; repeatable",
    )
    parser.add_argument(
        "--image", default="", help="only containers of this image (name, ID or ID prefix)"
    )
    parser.add_argument(
        "-l", "--latest", action="store_true", help="only the most recently created container"
    )
    _no_trunc_arg(parser)


PS_HEADERS = (
    "CONTAINER", "IMAGE", "CREATED", "STATE", "MOUNTED", "NAME", "POD", "NAMESPACE", "POD ID",
)  # fmt: skip


def ps(args: argparse.Namespace) -> int:
    def show(inv: Inventory) -> str:
        views = inv.ps(
            pod=args.pod,
            namespace=args.namespace,
            all_=args.all_,
            state=args.state,
            labels=args.labels,
            image=args.image,
        )
        if args.latest:
            views = views[-1:]
        if args.quiet:
            return "\n".join(v.record.id for v in views)
        if args.output != "table":
            return _dump([v.to_json() for v in views], args.output)
        now = time.time()
        rows = [
            [
                _id(v.record.id, args.no_trunc),
                v.record.metadata.image_name,
                output.age_since(v.record.metadata.created_at, now),
                v.state,
                "yes" if v.mounted else "no",
                "(infra)" if v.record.infra else v.record.metadata.metadata_name,
                v.pod,
                v.record.metadata.namespace,
                _id(v.record.metadata.pod_id, args.no_trunc),
            ]
            for v in views
        ]
        return output.table(PS_HEADERS, rows)

    return _show(args, show)


def pods_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    _output_arg(parser, "table", "json", "yaml")
    parser.add_argument("--name", default="", help="only the pod of this name")
    parser.add_argument("-n", "--namespace", default="", help="only this namespace's")
    parser.add_argument("-q", "--quiet", action="store_true", help="print the pod IDs only")
    _no_trunc_arg(parser)


def pods(args: argparse.Namespace) -> int:
    def show(inv: Inventory) -> str:
        found = inv.pods(namespace=args.namespace, name=args.name)
        if args.quiet:
            return "\n".join(p.infra.record.id for p in found)
        if args.output != "table":
            return _dump([p.to_json() for p in found], args.output)
        now = time.time()
        rows = [
            [
                _id(p.infra.record.id, args.no_trunc),
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


def images_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    _output_arg(parser, "table", "json", "yaml")
    parser.add_argument("-q", "--quiet", action="store_true", help="print the image IDs only")
    _no_trunc_arg(parser)
    # What PINNED means: the same pins as the agent's and `rmi --prune`'s.
    config.add_infra_image_argument(parser, env)
    parser.add_argument(
        "--pinned-image",
        dest="pinned_images",
        action="append",
        default=[r for r in (env.get(config.ENV_PREFIX + "PINNED_IMAGES") or "").split(",") if r],
        metavar="REF",
        help="an image GC never removes, shown as pinned; repeatable (env PODSTORE_PINNED_IMAGES)",
    )


def images(args: argparse.Namespace) -> int:
    def show(inv: Inventory) -> str:
        found = inv.images()
        _add_gc_columns(inv, found, _settings(args))
        if args.quiet:
            return "\n".join(i["id"] for i in found)
        if args.output != "table":
            return _dump(found, args.output)
        now = time.time()
        rows = [
            [
                _id(i["id"], args.no_trunc),
                i["names"][0] if i["names"] else "",
                output.size(i["size"]),
                i["containers"],
                "in use" if i["in_use"] else output.age_since(i["last_used"], now),
                "yes" if i["pinned"] else "no",
            ]
            for i in found
        ]
        headers = ("IMAGE ID", "NAME", "SIZE", "CONTAINERS", "LAST USED", "PINNED")
        return output.table(headers, rows)

    return _show(args, show)


def _collector(inv: Inventory, settings: config.Settings) -> Any:
    from controller.sync.imagegc import collector_for

    return collector_for(inv.runtime.images, settings)


def _add_gc_columns(inv: Inventory, found: list[dict[str, Any]], settings: config.Settings) -> None:
    """Each image's last use (Unix seconds, None if unknown), pin, and whether podstore
    pulled it, as image GC sees them."""
    from controller.reconcile.imagegc import matches

    if not found:
        return
    gc, _ = _collector(inv, settings).observe(write=False)
    records = {r.id: r for r in gc.images}
    for entry in found:
        record = records.get(entry["id"])
        entry["in_use"] = entry["id"] in gc.in_use
        entry["last_used"] = (record.last_used or None) if record else None
        entry["pinned"] = bool(record and matches(record, gc.pinned))
        entry["pulled_by_podstore"] = bool(record and record.pulled)


def inspect_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    _output_arg(parser, "json", "yaml")
    parser.add_argument(
        "id_or_name",
        metavar="ID_OR_NAME",
        help="a container or pod: ID, ID prefix, name in the store, or resource name "
        "([NAMESPACE/]NAME)",
    )


def inspect(args: argparse.Namespace) -> int:
    def show(inv: Inventory) -> str:
        return _dump(inv.inspect(args.id_or_name), args.output)

    return _show(args, show)


def _dump(data: Any, fmt: str) -> str:
    return output.to_yaml(data) if fmt == "yaml" else output.to_json(data)


# -- version, info ---------------------------------------------------------------------


def tool_version(tool: str, *args: str) -> str:
    """What ``tool ARGS`` prints as its version (its first line), or why there is none."""
    path = shutil.which(tool)
    if path is None:
        return "not installed"
    try:
        done = subprocess.run(
            [path, *args], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({err})"
    first = (done.stdout.strip() or done.stderr.strip()).splitlines()
    if done.returncode == 0 and first:
        return first[0].strip()
    if tool == "containers-storage":
        # Debian's build prints nothing for `version`: ask the package manager.
        package = _package_version(tool)
        if package:
            return f"{package} (package; {tool} version printed nothing)"
    return "unknown"


def _package_version(package: str) -> str:
    if shutil.which("dpkg-query") is None:
        return ""
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def versions() -> dict[str, str]:
    return {
        "podstore": __version__,
        "containers-storage": tool_version("containers-storage", "version"),
        "skopeo": tool_version("skopeo", "--version"),
        "runc": tool_version("runc", "--version"),
    }


def version_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    _output_arg(parser, "table", "json", "yaml")


def version(args: argparse.Namespace) -> int:
    found = versions()
    if args.output != "table":
        print(_dump(found, args.output))
    else:
        # crictl version's habit: one "Key:  value" line each.
        width = max(len(k) for k in found) + 1
        for key, value in found.items():
            print(f"{key + ':':<{width}}  {value}")
    return 0


def _usage(path: str) -> dict[str, Any]:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return {"path": path, "total": 0, "used": 0, "free": 0}
    return {"path": path, "total": usage.total, "used": usage.used, "free": usage.free}


def info_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    _output_arg(parser, "table", "json", "yaml")


def info(args: argparse.Namespace) -> int:
    def show(inv: Inventory) -> str:
        store: dict[str, Any] = {
            "graph_root": _usage(inv.store.root),
            "run_root": _usage(inv.store.run_root),
            "driver": inv.store.driver,
            "containers": len(inv.containers()),
            "pods": len(inv.pods()),
            "images": len(inv.store.images()),
        }
        tools = versions()
        if args.output != "table":
            return _dump({"store": store, "versions": tools}, args.output)
        lines = [
            f"graph root:  {store['graph_root']['path']} ({_disk(store['graph_root'])})",
            f"run root:    {store['run_root']['path']} ({_disk(store['run_root'])})",
            f"driver:      {store['driver']}",
            f"containers:  {store['containers']} (in {store['pods']} pods)",
            f"images:      {store['images']}",
        ]
        lines += [f"{k + ':':<13}{v}" for k, v in tools.items()]
        return "\n".join(lines)

    return _show(args, show)


def _disk(usage: Mapping[str, Any]) -> str:
    return f"{output.size(int(usage['used']))} used of {output.size(int(usage['total']))}"


# -- rm, rmp, rmi -------------------------------------------------------------------------


def rm_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    parser.add_argument(
        "-f", "--force", action="store_true", help="stop (unmount) a started container first"
    )
    parser.add_argument("ids", nargs="+", metavar="ID", help="container: ID, ID prefix or name")


def rm(args: argparse.Namespace) -> int:
    def remove(inv: Inventory, ident: str) -> str:
        view = inv.find(ident, containers_only=True)
        rid, name = view.record.id, view.label
        if view.record.infra:
            raise NotFound(
                f"{rid[:12]} ({name}) is a pod's infra container: remove the pod with "
                "`podstore rmp`"
            )
        if view.mounted and not args.force:
            raise NotFound(f"{rid[:12]} ({name}) is started: give -f to stop it first")
        if view.mounted:
            log.warning("stopping container %s (%s)", rid[:12], name)
            inv.runtime.stop_container(rid)
        log.warning("removing container %s (%s)", rid[:12], name)
        inv.runtime.delete_container(rid)
        return rid

    return _remove(args, remove)


def rmp_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    parser.add_argument(
        "-f", "--force", action="store_true", help="stop (unmount) started containers first"
    )
    parser.add_argument(
        "pods", nargs="+", metavar="POD", help="pod: ID, ID prefix, name in the store or name"
    )


def rmp(args: argparse.Namespace) -> int:
    def remove(inv: Inventory, ident: str) -> str:
        infra = inv.find(ident, pods_only=True)
        members = [v for v in inv.containers() if v.record.metadata.pod_id == infra.record.id]
        members = [v for v in members if not v.record.infra]
        started = [v for v in (*members, infra) if v.mounted]
        if started and not args.force:
            raise NotFound(
                f"pod {infra.record.id[:12]} ({infra.label}) has started containers ("
                + ", ".join(v.label for v in started)
                + "): give -f to stop them first"
            )
        for view in started:
            log.warning("stopping container %s (%s)", view.record.id[:12], view.label)
            inv.runtime.stop_container(view.record.id)
        for view in members:
            log.warning("removing container %s (%s)", view.record.id[:12], view.label)
        log.warning("removing pod %s (%s)", infra.record.id[:12], infra.label)
        inv.runtime.remove_pod_sandbox(infra.record.id)
        return infra.record.id

    return _remove(args, remove, what="pods")


def rmi_args(parser: argparse.ArgumentParser, env: dict[str, str]) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image: name, ID or ID prefix")
    parser.add_argument(
        "--prune",
        action="store_true",
        help="run one image garbage-collection pass now (the agent's, with the same flags)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="--prune: print the plan, remove nothing"
    )
    _output_arg(parser, "table", "json")
    config.add_infra_image_argument(parser, env)
    config.add_image_gc_arguments(parser, env)


def rmi(args: argparse.Namespace) -> int:
    if args.prune and args.images:
        print("podstore rmi: give IMAGE... or --prune, not both", file=sys.stderr)
        return 2
    if args.prune:
        return _prune(args)
    if not args.images:
        print("podstore rmi: give the images to remove, or --prune", file=sys.stderr)
        return 2
    if args.dry_run:
        print("podstore rmi: --dry-run goes with --prune", file=sys.stderr)
        return 2

    def remove(inv: Inventory, ident: str) -> str:
        image = inv.find_image(ident)
        users = [c for c in inv.store.containers() if c.image == image.id]
        if users:
            who = ", ".join(f"{c.id[:12]} ({c.names[0] if c.names else 'no name'})" for c in users)
            raise NotFound(f"image {image.id[:12]} is in use by {who}: remove those first")
        log.warning("removing image %s (%s)", image.id[:12], ", ".join(image.names) or "no name")
        inv.runtime.images.remove_image(image.id)
        return image.id

    return _remove(args, remove, what="images")


def _prune(args: argparse.Namespace) -> int:
    """``rmi --prune``: one GC pass (or its plan), a table of what goes, one line if it failed."""
    try:
        inv = _inventory(args)
    except StoreRefused as err:
        print(f"podstore rmi: {err}", file=sys.stderr)
        return err.status
    settings = _settings(args)
    outcome = _collector(inv, settings).run_pass(dry_run=args.dry_run)
    plan = outcome.plan
    if plan is None:
        print(f"podstore rmi: {outcome.reason}: {outcome.error}", file=sys.stderr)
        return 1
    done = plan.removals if args.dry_run else outcome.removed
    if args.output == "json":
        print(output.to_json(_prune_report(outcome, settings)))
    else:
        print(
            _prune_table(outcome, done, dry_run=args.dry_run, high=settings.image_gc_high_threshold)
        )
    if outcome.error:
        print(f"podstore rmi: {outcome.reason}: {outcome.error}", file=sys.stderr)
        return 1
    if outcome.low_unreachable and not args.dry_run:
        print(
            f"podstore rmi: {outcome.reason}: usage is "
            f"{(outcome.usage_after or plan.usage).percent():.1f}%, still at or over the low "
            f"threshold {settings.image_gc_low_threshold}%: nothing more may be removed "
            "(images in use, pinned, younger than the minimum age or not pulled by podstore)",
            file=sys.stderr,
        )
        return 1
    return 0


def _prune_table(
    outcome: Any, done: Any, *, dry_run: bool, high: int, no_trunc: bool = False
) -> str:
    plan = outcome.plan
    now = time.time()
    verb = "would remove" if dry_run else "removed"
    rows = [
        [_id(r.image_id, no_trunc), r.names[0] if r.names else "", output.size(r.bytes),
         output.age_since(r.last_used, now), verb, ""]
        for r in done
    ]  # fmt: skip
    rows += [
        [_id(s.removal.image_id, no_trunc), s.removal.names[0] if s.removal.names else "",
         output.size(s.removal.bytes), output.age_since(s.removal.last_used, now), "kept", s.why]
        for s in outcome.skipped
    ]  # fmt: skip
    if dry_run or not plan.needed:
        rows += [
            [_id(k.image_id, no_trunc), k.names[0] if k.names else "", "", "", "kept", k.why]
            for k in plan.kept
        ]
    after = plan.projected_percent if dry_run else (outcome.usage_after or plan.usage).percent()
    if not plan.needed:
        summary = (
            f"usage {plan.usage_percent:.1f}% is under the high threshold {high}%: "
            "nothing to remove"
        )
    else:
        summary = f"usage {plan.usage_percent:.1f}% -> {after:.1f}%, " + (
            f"{output.size(plan.bytes_freed)} to free"
            if dry_run
            else f"{output.size(outcome.bytes_freed)} freed"
        )
    table = output.table(("IMAGE ID", "NAME", "SIZE", "LAST USED", "ACTION", "WHY"), rows)
    return f"{table}\n{summary}" if rows else summary


def _prune_report(outcome: Any, settings: config.Settings) -> dict[str, Any]:
    plan = outcome.plan
    after = outcome.usage_after or plan.usage

    def removal(r: Any) -> dict[str, Any]:
        return {"id": r.image_id, "names": list(r.names), "bytes": r.bytes,
                "last_used": r.last_used or None}  # fmt: skip

    return {
        "dry_run": outcome.dry_run,
        "needed": plan.needed,
        "high_threshold": settings.image_gc_high_threshold,
        "low_threshold": settings.image_gc_low_threshold,
        "usage": {"used": plan.usage.used, "total": plan.usage.total},
        "usage_after": {"used": after.used, "total": after.total},
        "bytes_to_free": plan.bytes_to_free,
        "planned": [removal(r) for r in plan.removals],
        "removed": [removal(r) for r in outcome.removed],
        "skipped": [{**removal(s.removal), "why": s.why} for s in outcome.skipped],
        "kept": [{"id": k.image_id, "names": list(k.names), "why": k.why} for k in plan.kept],
        "low_unreachable": outcome.low_unreachable,
        "reason": outcome.reason,
        "error": outcome.error,
    }


def _remove(
    args: argparse.Namespace, remove: Callable[[Inventory, str], str], what: str = "ids"
) -> int:
    """Remove each named thing in turn: its full ID printed once gone, one gone
    already a note (and success), a refusal one line and status 1."""
    try:
        inv = _inventory(args)
    except StoreRefused as err:
        print(f"podstore {args.command}: {err}", file=sys.stderr)
        return err.status
    failures: list[str] = []
    for ident in getattr(args, what):
        try:
            print(remove(inv, ident), flush=True)
        except NotFound as err:
            if err.gone:
                print(f"podstore {args.command}: {err.args[0]} (nothing to do)", file=sys.stderr)
                continue
            print(f"podstore {args.command}: {err.args[0]}", file=sys.stderr)
            failures.append(str(err.args[0]))
        except StorageError as err:
            print(f"podstore {args.command}: {err}", file=sys.stderr)
            failures.append(str(err))
        inv.forget()
    return exitcodes.for_failures(failures) if failures else 0


def _show(args: argparse.Namespace, show: Callable[[Inventory], str]) -> int:
    """Run a read-only command: print what ``show`` makes of the store, or the error."""
    try:
        text = show(_inventory(args))
    except StoreRefused as err:
        print(f"podstore {args.command}: {err}", file=sys.stderr)
        return err.status
    except NotFound as err:
        print(f"podstore {args.command}: {err.args[0]}", file=sys.stderr)
        return 1
    except StorageError as err:
        print(f"podstore {args.command}: {err}", file=sys.stderr)
        return exitcodes.for_error(err)
    if text:
        print(text)
    return 0
