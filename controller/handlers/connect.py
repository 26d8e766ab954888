"""Before the agent starts: can it reach its API server with the credentials it was given?

kopf retries a failing login or a refused connection for ever, with tracebacks in the
log, which is right for an API server that goes away for a while but wrong for an agent
started with a kubeconfig that cannot work. :func:`preflight` looks at the kubeconfig
(the file exists, is YAML, names a current context whose cluster has a server), loads
it as the agent will, and makes one small call the agent needs (a page of one of its
node's StoragePods). A problem is a :class:`NotConnected` whose message names the cause
and what to do, and whose ``status`` is the command's exit status:

- ``EXIT_CONFIG`` (78, sysexits' EX_CONFIG): no kubeconfig, unreadable, not YAML, no
  current context, a context or cluster it does not define, the CRDs not installed;
- ``EXIT_UNAVAILABLE`` (69, EX_UNAVAILABLE): the API server does not answer, or fails;
- ``EXIT_NO_PERMISSION`` (77, EX_NOPERM): it answers, but refuses the credentials (401)
  or the agent's ServiceAccount may not list StoragePods (403).

Nothing read from a kubeconfig is printed except file names, context and cluster names
and the server's address: never a token, a password or a key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from controller.handlers import kube

EXIT_UNAVAILABLE = 69
EXIT_NO_PERMISSION = 77
EXIT_CONFIG = 78

_IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path


class NotConnected(Exception):
    """The agent cannot work with this API server or kubeconfig; ``status`` is the exit code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _read(path: str) -> Mapping[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = yaml.safe_load(handle)
    except PermissionError as err:
        raise NotConnected(
            f"cannot read kubeconfig {path}: permission denied; run as a user who may read it",
            EXIT_CONFIG,
        ) from err
    except OSError as err:
        raise NotConnected(f"cannot read kubeconfig {path}: {err.strerror}", EXIT_CONFIG) from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or "malformed"
        raise NotConnected(
            f"kubeconfig {path} is not valid YAML{where}: {problem}; fix the file or point "
            "--kubeconfig (KUBECONFIG) at another",
            EXIT_CONFIG,
        ) from err
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, Mapping):
        raise NotConnected(
            f"kubeconfig {path} is not a kubeconfig (a YAML mapping with clusters, contexts, "
            "users and current-context)",
            EXIT_CONFIG,
        )
    return loaded


def _named(entries: Any, name: str) -> Mapping[str, Any] | None:
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            return entry
    return None


def check_kubeconfig(paths: Sequence[str]) -> str:
    """The kubeconfig files merged as kubectl merges them; returns the server's address.

    ``paths`` is the list of ``KUBECONFIG`` (missing files in a list are skipped, as
    kubectl skips them; one file given must exist).
    """
    shown = os.pathsep.join(paths)
    present = [p for p in paths if os.path.exists(p)]
    if not present:
        raise NotConnected(
            f"kubeconfig {shown} does not exist: pass --kubeconfig FILE (or set KUBECONFIG) "
            "to a kubeconfig of the cluster",
            EXIT_CONFIG,
        )
    configs = [(p, _read(p)) for p in present]
    current = next((str(c["current-context"]) for _, c in configs if c.get("current-context")), "")
    if not current:
        raise NotConnected(
            f"kubeconfig {shown} has no current-context: choose one with "
            "`kubectl config use-context NAME`",
            EXIT_CONFIG,
        )
    context = next((e for _, c in configs if (e := _named(c.get("contexts"), current))), None)
    if context is None:
        raise NotConnected(
            f"kubeconfig {shown}: current-context {current!r} is not among its contexts; "
            "choose one with `kubectl config use-context NAME`",
            EXIT_CONFIG,
        )
    cluster_name = str((context.get("context") or {}).get("cluster") or "")
    cluster = next((e for _, c in configs if (e := _named(c.get("clusters"), cluster_name))), None)
    server = str(((cluster or {}).get("cluster") or {}).get("server") or "")
    if not server:
        raise NotConnected(
            f"kubeconfig {shown}: context {current!r} names cluster {cluster_name!r}, which "
            "it does not define with a server; add the cluster or fix the context",
            EXIT_CONFIG,
        )
    return server


def _in_cluster(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(_IN_CLUSTER_TOKEN)


def preflight(
    kubeconfig: str, node: str, *, environ: Mapping[str, str] | None = None, timeout: float = 10
) -> None:
    """Raise :class:`NotConnected` unless the agent can list its node's StoragePods."""
    env = os.environ if environ is None else environ
    if kubeconfig:
        server = check_kubeconfig(kubeconfig.split(os.pathsep))
        source = f"kubeconfig {kubeconfig}"
    elif _in_cluster(env):
        server, source = "the in-cluster API server", "the pod's service account"
    else:
        default = os.path.join(os.path.expanduser("~"), ".kube", "config")
        if not os.path.exists(default):
            raise NotConnected(
                "no kubeconfig: not running in a pod (no service account) and none given; "
                "pass --kubeconfig FILE or set KUBECONFIG",
                EXIT_CONFIG,
            )
        server, source = check_kubeconfig([default]), f"kubeconfig {default}"
    try:
        kube.configure(kubeconfig)
    except Exception as err:  # the client's loader: unusable certificates, auth plugins, ...
        text = " ".join(str(err).split())[:300] or type(err).__name__
        raise NotConnected(f"{source} cannot be used: {text}", EXIT_CONFIG) from err
    server = kube.api_client().credentials.server or server
    _call(server, source, node, timeout)


def _call(server: str, source: str, node: str, timeout: float) -> None:
    quiet = logging.getLogger("urllib3")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its retry warnings would come before our one line
    try:
        kube.ping(node, timeout)
    except Exception as err:
        raise _explain(err, server, source) from err
    finally:
        quiet.setLevel(level)


def _explain(err: Exception, server: str, source: str) -> NotConnected:
    status = getattr(err, "status", None)
    if status == 401:
        return NotConnected(
            f"the API server at {server} refused the credentials of {source} "
            "(HTTP 401 Unauthorized): renew them or use another kubeconfig",
            EXIT_NO_PERMISSION,
        )
    if status == 403:
        return NotConnected(
            f"the API server at {server} does not let {source} list storagepods.podstore.dev "
            "(HTTP 403 Forbidden): apply the ClusterRole of charts/podstore or manifests/",
            EXIT_NO_PERMISSION,
        )
    if status == 404:
        return NotConnected(
            f"the API server at {server} does not serve storagepods.podstore.dev: install the "
            "CRDs first (kubectl apply -f crds/)",
            EXIT_CONFIG,
        )
    if isinstance(status, int) and status:
        reason = getattr(err, "reason", "") or ""
        return NotConnected(
            f"the API server at {server} failed (HTTP {status} {reason}".rstrip()
            + "): try again when it is healthy",
            EXIT_UNAVAILABLE,
        )
    cause = getattr(err, "reason", None)
    text = " ".join(str(cause if isinstance(cause, BaseException) else err).split())
    return NotConnected(
        f"cannot reach the API server at {server} ({text[:200] or type(err).__name__}): check "
        f"the server address in {source} and that the API server is up",
        EXIT_UNAVAILABLE,
    )
