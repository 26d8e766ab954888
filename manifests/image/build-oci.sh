#!/usr/bin/env bash
# Builds the podstore agent image with no registry and no base image: a Debian 12 root
# filesystem made by mmdebstrap from the configured Debian mirror, with the packages of
# debian-packages.txt, podstore's wheel and the pinned requirements.txt, assembled into an
# OCI image layout by umoci. The same inputs and SOURCE_DATE_EPOCH give the same digest.
#
#   manifests/image/build-oci.sh [OUT]            (make image: OUT=build/image)
#   manifests/image/build-oci.sh --check [DIR]    (make image-check)
#
# Writes OUT/oci (an OCI image layout, tag podstore:<version>) and prints its digest and
# size. --check builds it twice from the same inputs (into DIR/a and DIR/b, default a new
# temporary folder) and compares them with oci_diff.py: exit 0 when both have the same
# digest, 1 naming the first differing file (both builds are then kept), 2 on errors. Needs root (mmdebstrap's root mode, chroot), mmdebstrap, umoci and python3 with
# venv. Environment:
#   SOURCE_DATE_EPOCH  time stamped on every file and on the image (default: the time of
#                      the HEAD commit, or 0 outside git)
#   DEBIAN_MIRROR      Debian archive (default: the one in /etc/apt/sources.list.d or
#                      http://deb.debian.org/debian); DEBIAN_SECURITY_MIRROR likewise
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
die() { echo "build-oci.sh: $*" >&2; exit 2; }

check=false
if [[ "${1:-}" == --check ]]; then
    check=true
    shift
fi
[[ $# -le 1 && "${1:-}" != -* ]] || die "usage: build-oci.sh [OUT] | build-oci.sh --check [DIR]"
if ! ${check}; then
    out="$(mkdir -p "${1:-${repo}/build/image}" && cd "${1:-${repo}/build/image}" && pwd)"
fi
cd "${repo}"

[[ "$(id -u)" == 0 ]] || die "run it as root (mmdebstrap's root mode and chroot need it)"
for tool in mmdebstrap umoci python3; do
    command -v "${tool}" >/dev/null || die "${tool} is missing: apt-get install ${tool} (or make install)"
done

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct HEAD 2>/dev/null || echo 0)"
fi
export SOURCE_DATE_EPOCH
created="$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)"

if ${check}; then
    # Two builds, one SOURCE_DATE_EPOCH (exported above), two output folders: whatever
    # the folder's path, the time of day or a random name changes shows up as a difference.
    if [[ -n "${1:-}" ]]; then
        scratch="$(mkdir -p "$1" && cd "$1" && pwd)"
        keep=true
    else
        scratch="$(mktemp -d "${TMPDIR:-/tmp}/podstore-image-check.XXXXXX")"
        keep=false
    fi
    for side in a b; do
        started="${SECONDS}"
        if ! bash "${BASH_SOURCE[0]}" "${scratch}/${side}" >"${scratch}/${side}.log" 2>&1; then
            tail -n 20 "${scratch}/${side}.log" >&2
            die "build ${side} failed; its log is ${scratch}/${side}.log"
        fi
        echo "build ${side}: $((SECONDS - started)) s, $(grep -E '^(digest|size) ' "${scratch}/${side}.log" | paste -sd' ' -)"
    done
    status=0
    python3 "${here}/oci_diff.py" "${scratch}/a/oci" "${scratch}/b/oci" "${version}" || status=$?
    if [[ "${status}" == 0 ]]; then
        ${keep} || rm -rf "${scratch}"
        echo "reproducible: two builds at SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} give the same image"
    else
        echo "build-oci.sh: not reproducible (or not comparable); both builds are in ${scratch}" >&2
    fi
    exit "${status}"
fi

mirror_of() {  # the first URIs of the host's deb822 sources for a suite, or a default
    local suite="$1" default="$2" found
    found="$(awk -v s="${suite}" '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i==s){print u; exit}}' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)"
    echo "${found:-${default}}"
}
mirror="${DEBIAN_MIRROR:-$(mirror_of bookworm http://deb.debian.org/debian)}"
security="${DEBIAN_SECURITY_MIRROR:-$(mirror_of bookworm-security http://deb.debian.org/debian-security)}"

packages="$(grep -v -e '^\s*#' -e '^\s*$' "${here}/debian-packages.txt" | paste -sd, -)"

work="${out}/work"
rm -rf "${work}" "${out}/oci"
mkdir -p "${work}/wheels"

# podstore's wheel, built with the pinned build backend (no build isolation), and the
# pinned dependencies as wheels: nothing is resolved anew (--no-deps). The wheel is built
# from a copy of the sources it packages: setuptools leaves build/ and *.egg-info in the
# folder it builds, and a file left there by an earlier build would enter the wheel.
python3 -m venv "${work}/build"
pip=("${work}/build/bin/pip" --disable-pip-version-check --no-cache-dir -q)
"${pip[@]}" install --no-deps -r "${here}/build-requirements.txt"
mkdir -p "${work}/src"
tar -c --exclude=__pycache__ --exclude='*.pyc' pyproject.toml README.md controller \
    | tar -x -C "${work}/src"
"${pip[@]}" wheel --no-deps --no-build-isolation --wheel-dir "${work}/wheels" "${work}/src"
"${pip[@]}" download --no-deps --only-binary=:all: -d "${work}/wheels" -r "${here}/requirements.txt"

# Everything podstore adds to the Debian root filesystem, run by mmdebstrap before it
# writes the tarball ($1 is the root filesystem).
cat > "${work}/customize.sh" <<HOOK
#!/bin/sh
set -eu
root="\$1"
chroot "\$root" python3 -m venv --without-pip /opt/podstore
site="\$root/opt/podstore/lib/python3.11/site-packages"
# By name from the wheel folder, not by file path: pip records a path it installed from
# in direct_url.json (and its hash in RECORD), which would differ with every OUT.
"${work}/build/bin/pip" --disable-pip-version-check --no-cache-dir -q install \\
    --no-deps --no-compile --no-index --find-links "${work}/wheels" --only-binary=:all: \\
    --target "\$site" -r "${here}/requirements.txt" "podstore==${version}"
# The wheels' console scripts start with the build virtualenv's python (a path under OUT):
# unusable in the image and different for every OUT. They go, and so do their lines in
# RECORD (which hold their hashes); the one command the image needs is written below.
rm -rf "\$site/bin"
sed -i '\#^\.\./\.\./bin/#d' "\$site"/*.dist-info/RECORD
if grep -l '^\.\./' "\$site"/*.dist-info/RECORD; then
    echo "customize.sh: RECORD lines outside site-packages remain (above)" >&2
    exit 1
fi
printf '%s\n' '#!/opt/podstore/bin/python3' 'import sys' 'from controller.cli import main' \\
    'sys.exit(main())' > "\$root/opt/podstore/bin/podstore"
chmod 0755 "\$root/opt/podstore/bin/podstore"
# checked-hash .pyc files depend on the sources' content only, not on file times.
chroot "\$root" python3 -m compileall -q -j 1 --invalidation-mode checked-hash /opt/podstore/lib
# What differs from one build to the next, or is never read: logs, caches, docs.
rm -rf "\$root"/var/log/* "\$root"/var/cache/ldconfig/aux-cache "\$root"/var/cache/debconf/*-old \\
    "\$root"/var/lib/dpkg/*-old "\$root"/usr/share/info/* "\$root"/usr/share/lintian \\
    "\$root"/usr/share/doc-base
# mmdebstrap copies the build host's resolver and name: the runtime mounts its own over
# these, so they stay as empty files (like /etc/machine-id) and the image is the same
# whichever host builds it.
rm -f "\$root/etc/resolv.conf" "\$root/etc/hostname"
install -m 0644 /dev/null "\$root/etc/resolv.conf"
install -m 0644 /dev/null "\$root/etc/hostname"
HOOK
chmod 0755 "${work}/customize.sh"

# essential: Debian's Essential:yes set (dpkg, coreutils, ...), no apt in the image.
# merged-usr hook: /bin, /lib, /sbin are links into /usr before the first package, so the
# Essential set takes usr-is-merged and not usrmerge (which needs perl).
mmdebstrap --quiet --mode=root --variant=essential --format=tar \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='APT::Install-Recommends "false"' \
    --aptopt='Acquire::Retries "5"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --include="${packages}" \
    --customize-hook="${work}/customize.sh \"\$1\"" \
    bookworm "${work}/rootfs.tar" \
    "deb ${mirror} bookworm main" \
    "deb ${mirror} bookworm-updates main" \
    "deb ${security} bookworm-security main"

image="${out}/oci:${version}"
umoci init --layout "${out}/oci"
umoci new --image "${image}"
umoci raw add-layer --image "${image}" --history.created "${created}" \
    --history.created_by "manifests/image/build-oci.sh (mmdebstrap, Debian 12)" \
    "${work}/rootfs.tar"
umoci config --image "${image}" --created "${created}" \
    --no-history --architecture amd64 --os linux \
    --config.user 0:0 \
    --config.entrypoint podstore --config.cmd --help \
    --config.env PATH=/opt/podstore/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env PYTHONDONTWRITEBYTECODE=1 \
    --config.env PYTHONUNBUFFERED=1 \
    --config.label org.opencontainers.image.title=podstore \
    --config.label "org.opencontainers.image.description=Node agent keeping pods and containers in containers/storage" \
    --config.label org.opencontainers.image.licenses=Apache-2.0 \
    --config.label "org.opencontainers.image.version=${version}"
umoci gc --layout "${out}/oci"

rootfs_bytes="$(stat -c %s "${work}/rootfs.tar")"
rm -rf "${work}"
python3 - "${out}/oci" "${version}" "${rootfs_bytes}" <<'PY'
import json, pathlib, sys
layout, version, rootfs = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
index = json.loads((layout / "index.json").read_text())
entry = next(m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == version)
blobs = sum(p.stat().st_size for p in (layout / "blobs").rglob("*") if p.is_file())
print(f"image   {layout}:{version}  (oci: layout; skopeo copy oci:{layout}:{version} ...)")
print(f"digest  {entry['digest']}")
print(f"size    {blobs / 1e6:.1f} MB compressed (layout), {rootfs / 1e6:.1f} MB unpacked")
PY
