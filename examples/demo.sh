#!/usr/bin/env bash
# podstore's demo, run by `make demo` (after `make install`), offline:
#
#   1. builds a small busybox image from Debian's busybox-static with umoci (.demo/image),
#   2. makes a containers/storage store in .demo/store (overlay where the kernel allows
#      it here, vfs otherwise) and loads the image into it with skopeo,
#   3. runs `podstore run --once -f examples/` against that store,
#   4. shows `podstore pods`, `podstore ps` and `podstore images`,
#   5. runs the hello-greeter container's bundle with runc, so that its process prints
#      from the layer podstore mounted,
#   6. runs `podstore run --once` again: nothing changes, the IDs stay.
#
# On exit, also after a failure or Ctrl-C, it deletes the runc container and unmounts
# and shuts down the store; the store stays in .demo/ for you to look at.
#
#   bash examples/demo.sh          the demo
#   bash examples/demo.sh clean    shut the demo store down and remove .demo/
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=${VENV:-.venv}
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
PODSTORE="$VENV/bin/podstore"
PYTHON="$VENV/bin/python"
DEMO="$REPO/.demo"
ROOT="$DEMO/store/root"
RUNROOT="$DEMO/store/run"
LAYOUT="$DEMO/image/layout"
RUNC_ROOT="$DEMO/runc"
RUNC_ID="podstore-demo-$$"
IMAGE_NAME="localhost/podstore-demo"
STARTED=$SECONDS

if [ -t 1 ]; then BOLD=$'\033[1m'; DIM=$'\033[2m'; RESET=$'\033[0m'; else BOLD=; DIM=; RESET=; fi
step() { printf '\n%s[%3ds] ==> %s%s\n' "$BOLD" $((SECONDS - STARTED)) "$*" "$RESET"; }
show() { printf '%s$ %s%s\n' "$DIM" "$*" "$RESET"; "$@"; }
fail() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# -- the store's driver ------------------------------------------------------------------

store_driver() {
  # The driver the store was made with, else overlay if this kernel mounts overlayfs
  # here (it does not on some overlay-on-overlay setups), else vfs.
  if [ -n "${PODSTORE_DRIVER:-}" ]; then echo "$PODSTORE_DRIVER"; return; fi
  if [ -f "$DEMO/store/driver" ]; then cat "$DEMO/store/driver"; return; fi
  local probe="$DEMO/overlay-probe"
  rm -rf "$probe"
  mkdir -p "$probe"/{lower,upper,work,merged}
  if mount -t overlay overlay \
      -o "lowerdir=$probe/lower,upperdir=$probe/upper,workdir=$probe/work" "$probe/merged" \
      2>/dev/null; then
    umount "$probe/merged"
    echo overlay
  else
    echo vfs
  fi
  rm -rf "$probe"
}

cs() { containers-storage --graph "$ROOT" --run "$RUNROOT" --storage-driver "$DRIVER" "$@"; }

shutdown_store() {
  # Unmount every layer, then shut down. (`shutdown --force` alone is not used: in
  # containers-storage 1.43 it never returns while a layer is mounted.)
  [ -d "$ROOT" ] || return 0
  local layers
  layers=$(timeout 60 containers-storage --graph "$ROOT" --run "$RUNROOT" \
    --storage-driver "$DRIVER" layers --json 2>/dev/null \
    | "$PYTHON" -c 'import json,sys; [print(l["id"]) for l in json.load(sys.stdin) or []]' \
    2>/dev/null) || layers=""
  for layer in $layers; do
    timeout 60 containers-storage --graph "$ROOT" --run "$RUNROOT" \
      --storage-driver "$DRIVER" unmount --force "$layer" >/dev/null 2>&1 || true
  done
  timeout 60 containers-storage --graph "$ROOT" --run "$RUNROOT" \
    --storage-driver "$DRIVER" shutdown >/dev/null 2>&1 || true
}

remove_demo() {
  shutdown_store
  # Anything still mounted under .demo (a run interrupted at the worst moment).
  if [ -d "$DEMO" ]; then
    local points
    points=$(awk -v base="$DEMO/" 'index($2, base) == 1 {print $2}' /proc/self/mounts | sort -r)
    for point in $points; do
      umount "$point" 2>/dev/null || umount -l "$point" 2>/dev/null || true
    done
  fi
  rm -rf "$DEMO"
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -d "$RUNC_ROOT" ]; then
    runc --root "$RUNC_ROOT" delete --force "$RUNC_ID" >/dev/null 2>&1 || true
  fi
  if [ -n "${DRIVER:-}" ] && [ -d "$ROOT" ]; then
    step "cleaning up: unmounting the containers and shutting the store down"
    shutdown_store
    cat <<EOF
The store stays in .demo/store for you to look at, for example:

  $PODSTORE ps -a --root $ROOT --runroot $RUNROOT --driver $DRIVER
  $PODSTORE inspect hello-greeter --root $ROOT --runroot $RUNROOT --driver $DRIVER

Remove it with:  bash examples/demo.sh clean
EOF
  fi
  if [ "$status" -ne 0 ]; then
    printf '\n%sdemo failed (exit %d); see the messages above%s\n' "$BOLD" "$status" "$RESET" >&2
  fi
  exit "$status"
}

# -- checks ---------------------------------------------------------------------------

if [ "$(id -u)" -ne 0 ]; then
  fail "the demo mounts container layers and runs runc: run it as root (sudo make demo)"
fi
for tool in containers-storage skopeo umoci runc; do
  command -v "$tool" >/dev/null || fail "$tool is missing: run \`make install\` first"
done
[ -x /bin/busybox ] || fail "/bin/busybox is missing: apt-get install busybox-static"
[ -x "$PODSTORE" ] || fail "$PODSTORE is missing: run \`make install\` first"
case "$DEMO" in
  *[:+\[\]]*) fail "the checkout's path ($REPO) holds one of : + [ ], which a store path may not" ;;
esac

if [ "${1:-}" = "clean" ]; then
  DRIVER=$(store_driver)
  remove_demo
  echo "removed $DEMO"
  exit 0
fi

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- 1. an image, built offline ------------------------------------------------------------

step "building the example image from /bin/busybox with umoci (.demo/image)"
if [ -d "$DEMO" ]; then
  DRIVER=$(store_driver)
  echo "removing the store of an earlier demo"
  remove_demo
  DRIVER=
fi
mkdir -p "$DEMO/image"
umoci --log=error init --layout "$LAYOUT"
umoci --log=error new --image "$LAYOUT:base"
umoci --log=error unpack --image "$LAYOUT:base" "$DEMO/image/bundle"
rootfs="$DEMO/image/bundle/rootfs"
mkdir -p "$rootfs"/{bin,etc,proc,sys,dev,tmp}
chmod 1777 "$rootfs/tmp"
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh echo cat ls sleep env hostname id uname printenv; do
  ln -s busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
echo "I was written into this image by examples/demo.sh" >"$rootfs/etc/podstore-demo.txt"
umoci --log=error repack --image "$LAYOUT:base" "$DEMO/image/bundle"
rm -rf "$DEMO/image/bundle"
umoci --log=error config --image "$LAYOUT:base" --tag busybox \
  --clear=config.entrypoint --clear=config.cmd --clear=config.env \
  --config.entrypoint=/bin/sh --config.entrypoint=-c --config.cmd="echo hello" \
  --config.env=PATH=/bin --config.workingdir=/
umoci --log=error config --image "$LAYOUT:base" --tag pause \
  --clear=config.entrypoint --clear=config.cmd --clear=config.env \
  --config.entrypoint=/bin/sleep --config.cmd=infinity --config.env=PATH=/bin
umoci --log=error rm --image "$LAYOUT:base"
echo "built $LAYOUT (tags busybox and pause, $(du -sh "$LAYOUT" | cut -f1))"

# -- 2. a store, with the image in it ------------------------------------------------------

DRIVER=$(store_driver)
step "making a store in .demo/store (driver: $DRIVER) and loading the images with skopeo"
mkdir -p "$ROOT" "$RUNROOT"
echo "$DRIVER" >"$DEMO/store/driver"
for tag in busybox pause; do
  show skopeo copy --quiet "oci:$LAYOUT:$tag" \
    "containers-storage:[$DRIVER@$ROOT+$RUNROOT]$IMAGE_NAME/$tag:1"
done

export PODSTORE_ROOT="$ROOT" PODSTORE_RUNROOT="$RUNROOT" PODSTORE_DRIVER="$DRIVER"
export PODSTORE_LOG_LEVEL=${PODSTORE_LOG_LEVEL:-WARNING}

# -- 3. podstore run -------------------------------------------------------------------------

step "podstore run --once -f examples/ : the manifests, made real in the store"
show "$PODSTORE" run --once -f examples/

# -- 4. what the store holds ------------------------------------------------------------------

step "what podstore keeps in the store, read from the store itself"
show "$PODSTORE" pods
echo
show "$PODSTORE" ps
echo
show "$PODSTORE" images

# -- 5. a bundle, run ---------------------------------------------------------------------------

step "running hello-greeter's bundle with runc: its run directory, as podstore rendered it"
inspect=$("$PODSTORE" inspect hello-greeter)
RUN_DIR=$(printf '%s' "$inspect" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["run_dir"])')
MOUNTPOINT=$(printf '%s' "$inspect" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["mountpoint"])')
echo "run dir:    $RUN_DIR"
echo "root.path:  $MOUNTPOINT (the container's layer, mounted by podstore)"
mkdir -p "$RUNC_ROOT"
show runc --root "$RUNC_ROOT" run --bundle "$RUN_DIR" "$RUNC_ID" </dev/null
runc --root "$RUNC_ROOT" delete --force "$RUNC_ID" >/dev/null 2>&1 || true

# -- 6. again ----------------------------------------------------------------------------------

step "podstore run --once again: nothing changed, so nothing is touched (same IDs)"
show "$PODSTORE" run --once -f examples/

step "done in $((SECONDS - STARTED))s"
