#!/usr/bin/env bash
# Builds the podstore agent image reproducibly: the same commit, base digest and apt
# snapshot give the same image, layer for layer.
#
#   BASE_DIGEST=sha256:<64 hex> manifests/image/build.sh [IMAGE]
#
# IMAGE defaults to localhost/podstore:<version from pyproject.toml>, the chart's and the
# manifests' default image. Environment:
#   BASE_DIGEST      digest of docker.io/library/debian:12-slim (required; README.md says
#                    how to look it up)
#   DEBIAN_SNAPSHOT  snapshot.debian.org timestamp (default: the Containerfile's)
#   SOURCE_DATE_EPOCH  time stamped on every file and on the image (default: the commit's)
#   PLATFORM         e.g. linux/arm64 (default: the host's)
#   BUILDER          podman (default) or buildah
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/../.." && pwd)"
cd "${repo}"

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)"
image="${1:-localhost/podstore:${version}}"
builder="${BUILDER:-podman}"

base_digest="${BASE_DIGEST:-}"
if [[ ! "${base_digest}" =~ ^sha256:[0-9a-f]{64}$ || "${base_digest}" =~ ^sha256:0{64}$ ]]; then
    echo "build.sh: set BASE_DIGEST to the digest of docker.io/library/debian:12-slim, e.g." >&2
    echo "  BASE_DIGEST=\$(skopeo inspect --format '{{.Digest}}' docker://docker.io/library/debian:12-slim)" >&2
    exit 2
fi

# The build context is the committed tree (git archive HEAD), never the working folder:
# no virtualenv or caches are sent, and SOURCE_DATE_EPOCH describes exactly what is built.
if ! git rev-parse --git-dir >/dev/null 2>&1; then
    echo "build.sh: run it inside the podstore git checkout" >&2
    exit 2
fi
if ! git diff --quiet HEAD -- pyproject.toml README.md controller manifests/image; then
    echo "build.sh: note: uncommitted changes are not built; HEAD is" >&2
fi
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}"
revision="$(git rev-parse HEAD)"
context="$(mktemp -d)"
trap 'rm -rf "${context}"' EXIT
git archive --format=tar HEAD pyproject.toml README.md controller manifests/image \
    | tar -x -C "${context}"

args=(
    --file "${context}/manifests/image/Containerfile"
    --tag "${image}"
    --build-arg "BASE_DIGEST=${base_digest}"
    --build-arg "SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}"
    # Every file in every layer and the image's creation time get this timestamp.
    --timestamp "${SOURCE_DATE_EPOCH}"
    # No builder version label and no history entries with build times in the config.
    --identity-label=false
    --omit-history
    # Fresh layers: a cached layer from another snapshot would not be reproduced.
    --no-cache
    --pull=missing
    --label "org.opencontainers.image.version=${version}"
    --label "org.opencontainers.image.revision=${revision}"
)
if [[ -n "${DEBIAN_SNAPSHOT:-}" ]]; then
    args+=(--build-arg "DEBIAN_SNAPSHOT=${DEBIAN_SNAPSHOT}")
fi
if [[ -n "${PLATFORM:-}" ]]; then
    args+=(--platform "${PLATFORM}")
fi

case "${builder}" in
    podman) podman build "${args[@]}" "${context}" ;;
    buildah) buildah build "${args[@]}" "${context}" ;;
    *) echo "build.sh: BUILDER must be podman or buildah" >&2; exit 2 ;;
esac

echo "built ${image} (SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}, base ${base_digest})"
