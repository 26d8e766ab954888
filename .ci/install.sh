#!/usr/bin/env bash
# Installs everything podstore's demo, tests and benchmarks need on a fresh
# Debian 12 machine: the container tools from Debian, the Python packages in a
# virtualenv at $VENV (default .venv). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
APT_PACKAGES=(containers-storage skopeo runc docker-registry umoci busybox-static
              podman python3-venv ca-certificates mmdebstrap)
# mmdebstrap builds the agent image's root filesystem (make image, tests/e2e/test_agent_image.py).
# kubectl comes with these machines' image (not from the Debian archive): the deploy
# tests use it for `kubectl kustomize` and say so when it is missing.
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo ">> apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The registry package starts a service on :5000 that the tests do not use.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi
if [ ! -x "$VENV/bin/python" ]; then
  echo ">> python3 -m venv $VENV"
  python3 -m venv "$VENV"
fi
echo ">> pip install -e .[test]"
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[test]'
