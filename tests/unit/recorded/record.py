"""Record what the real ``containers-storage`` prints, for the parsing tests.

Run as root from the repository root: ``.venv/bin/python tests/unit/recorded/record.py``.
It builds a busybox image with umoci, copies it into a scratch store under
/tmp with skopeo, drives the store through the cases below and writes one
capture per case (``<case>.json``: the arguments after the store's options,
exit status, stdout, stderr). The store is always unmounted, shut down and
removed. IDs of the pod and its containers are fixed; layer IDs and times
change with every recording.

The unit tests feed these captures to ``Store`` through a stub runner, so a
change in the tool's output shows up as a failing test after re-recording.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from bench import common  # noqa: E402

SCRATCH = Path("/tmp/podstore-record")
POD_ID = "aaaa" + "0" * 59 + "1"
MEMBER_ID = "bbbb" + "0" * 59 + "2"
MISSING_ID = "cccc" + "0" * 59 + "9"
MISSING_IMAGE_ID = "eeee" + "0" * 60
IMAGE_NAME = "localhost/busybox:rec"


def metadata(image_id: str, *, pod: bool, name: str, metadata_name: str, created: int) -> str:
    """Metadata as RuntimeContainerMetadata.to_json writes it (sorted, compact)."""
    data = {
        "attempt": 0,
        "created-at": created,
        "image-id": image_id,
        "image-name": IMAGE_NAME,
        "labels": {} if pod else {"podstore.dev/container": metadata_name},
        "managed-by": "podstore",
        "metadata-name": metadata_name,
        "mountlabel": "",
        "name": name,
        "namespace": "default",
        "pod": pod,
        "pod-id": POD_ID,
        "pod-name": "web",
        "uid": "0d1e2f30-uid",
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def tool_version() -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "containers-storage"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"containers-storage {done.stdout.strip() or 'unknown'}"


def main() -> None:
    common.need(common.CS, "skopeo", "umoci", "busybox")
    if SCRATCH.exists():
        common.cleanup_store(
            common.TempStore(SCRATCH, str(SCRATCH / "root"), str(SCRATCH / "runroot"))
        )
    version = tool_version()
    written: list[str] = []

    with common.temp_dir("podstore-record-image-") as workdir:
        layout = common.build_busybox_image(workdir, tag="rec")
        with common.temp_store(base=SCRATCH) as store:

            def capture(case: str, *args: str) -> subprocess.CompletedProcess[str]:
                done = store.cli(*args, check=False)
                record = {
                    "recorded-with": version,
                    "store": {"root": store.root, "runroot": store.run_root, "driver": "overlay"},
                    "args": list(args),
                    "returncode": done.returncode,
                    "stdout": done.stdout,
                    "stderr": done.stderr,
                }
                path = HERE / f"{case}.json"
                path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
                written.append(path.name)
                return done

            image_id = store.load(layout, "rec", IMAGE_NAME)
            infra_meta = metadata(
                image_id, pod=True, name="k8s_POD_web", metadata_name="web", created=1700000000
            )
            member_meta = metadata(
                image_id, pod=False, name="web-app", metadata_name="app", created=1700000001
            )

            capture("images", "images", "--json")
            capture("image", "image", "--json", IMAGE_NAME)
            capture("image-unknown", "image", "--json", "localhost/nope:1")
            capture("get-image-data", "get-image-data", image_id, "sha256:" + image_id)
            capture(
                "get-image-data-unknown",
                "get-image-data",
                MISSING_IMAGE_ID,
                "sha256:" + MISSING_IMAGE_ID,
            )
            # The argument order is the one Store.create_container builds.
            infra = capture(
                "create-container-infra",
                "create-container",
                "--json",
                "--metadata",
                infra_meta,
                "--id",
                POD_ID,
                "--name",
                "k8s_POD_web",
                "--name",
                "web",
                image_id,
            )
            member = capture(
                "create-container-member",
                "create-container",
                "--json",
                "--metadata",
                member_meta,
                "--id",
                MEMBER_ID,
                "--name",
                "web-app",
                image_id,
            )
            # A container someone else made (podman, cri-o): no podstore metadata.
            foreign = json.loads(
                store.cli("create-container", "--json", "--name", "foreign", IMAGE_NAME).stdout
            )
            member_layer = json.loads(member.stdout)["layer"]
            infra_layer = json.loads(infra.stdout)["layer"]
            capture("add-names-layer", "add-names", "--name", "web-app-layer", member_layer)
            capture("layer", "layer", "--json", member_layer)
            capture("layer-unknown", "layer", "--json", "nosuchlayer")
            capture("get-container-dir", "get-container-dir", POD_ID)
            capture("get-container-run-dir", "get-container-run-dir", POD_ID)
            capture("get-container-dir-unknown", "get-container-dir", MISSING_ID)
            capture("get-container-run-dir-unknown", "get-container-run-dir", MISSING_ID)
            capture("mount", "mount", "--json", POD_ID)
            capture("mount-unknown", "mount", "--json", MISSING_ID)
            store.cli("mount", foreign["id"])
            capture("mounted", "mounted", POD_ID, MEMBER_ID, foreign["id"])
            capture("mounted-with-unknown", "mounted", POD_ID, MEMBER_ID, MISSING_ID)
            capture("containers", "containers", "--json")
            capture("container", "container", "--json", POD_ID)
            capture("container-by-name", "container", "--json", "web-app")
            capture("container-unknown", "container", "--json", MISSING_ID)
            capture("container-unknown-name", "container", "--json", "nosuchname")
            capture("metadata", "metadata", POD_ID)
            capture("metadata-unknown", "metadata", MISSING_ID)
            capture(
                "create-container-name-conflict",
                "create-container",
                "--json",
                "--metadata",
                member_meta,
                "--name",
                "web-app",
                image_id,
            )
            capture(
                "create-container-id-conflict",
                "create-container",
                "--json",
                "--metadata",
                infra_meta,
                "--id",
                POD_ID,
                "--name",
                "other",
                image_id,
            )
            capture(
                "create-container-image-unknown",
                "create-container",
                "--json",
                "--metadata",
                "{}",
                "--name",
                "x",
                MISSING_IMAGE_ID,
            )
            capture("set-metadata", "set-metadata", "--metadata", member_meta, MEMBER_ID)
            capture("set-metadata-unknown", "set-metadata", "--metadata", "{}", MISSING_ID)
            capture("unmount", "unmount", "--force", POD_ID)
            capture("unmount-not-mounted", "unmount", "--force", MEMBER_ID)
            capture("unmount-unknown", "unmount", "--force", MISSING_ID)
            capture("delete-image-in-use", "delete-image", image_id)
            capture("delete-image-unknown", "delete-image", MISSING_IMAGE_ID)
            # add-names does not refuse a name another layer holds: it moves it.
            capture("add-names-taken", "add-names", "--name", "web-app-layer", infra_layer)
            capture("layer-after-taken", "layer", "--json", member_layer)
            # Several IDs in one process, one of them unknown (Store.*_many).
            capture("mount-many", "mount", "--json", POD_ID, MISSING_ID, MEMBER_ID)
            capture("container-many", "container", "--json", POD_ID, MISSING_ID, "web-app")
            capture("metadata-many", "metadata", "--json", POD_ID, MISSING_ID, MEMBER_ID)
            capture("unmount-many", "unmount", "--json", "--force", POD_ID, MISSING_ID, MEMBER_ID)
            capture("delete-container", "delete-container", MEMBER_ID)
            capture("delete-container-unknown", "delete-container", MISSING_ID)
            store.cli("mount", POD_ID)
            capture("delete-many", "delete-container", "--json", POD_ID, MISSING_ID, MEMBER_ID)

    print(f"wrote {len(written)} captures to {HERE} with {version}")
    if shutil.which("git"):
        subprocess.run(["git", "-C", str(HERE), "status", "--short", "."], check=False)


if __name__ == "__main__":
    main()
