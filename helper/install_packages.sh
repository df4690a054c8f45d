#!/usr/bin/env bash
# Install the Debian packages the local stack runs, when their binaries are missing:
#   helper/install_packages.sh haproxy prometheus
# (package name = binary name for both). Root runs apt-get directly, anyone else through sudo.
# Debian's packages start no daemon here, and the stack never uses their system service or
# /etc config: HAProxy and Prometheus run with generated configs under MLP_STATE_DIR.
set -euo pipefail

missing=()
for pkg in "$@"; do
  command -v "$pkg" >/dev/null 2>&1 || [[ -x "/usr/sbin/$pkg" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

fail() {
  echo "install_packages: $1 is not installed and could not be installed:" \
    "run 'apt-get install -y --no-install-recommends ${missing[*]}' as root" >&2
  exit 1
}
if ! command -v apt-get >/dev/null 2>&1; then
  fail "${missing[*]} (no apt-get on this machine; install the package(s) by hand)"
fi
sudo=()
if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null 2>&1 || fail "${missing[*]} (not root and no sudo)"
  sudo=(sudo -n)
fi
echo "install_packages: installing ${missing[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq >/dev/null || fail "${missing[*]} (apt-get update failed)"
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || fail "${missing[*]}"
for pkg in "${missing[@]}"; do
  command -v "$pkg" >/dev/null 2>&1 || [[ -x "/usr/sbin/$pkg" ]] || fail "$pkg"
done
