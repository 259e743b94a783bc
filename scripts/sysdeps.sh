#!/usr/bin/env bash
# Installs the Debian packages edgepack's tests, host build and virtual boards need; a no-op when all are present.
#   mono-devel: mcs + mono for the C# device host   qemu-user-static, debootstrap, binfmt-support: virtual arm64 boards
#   openssh-*: the boards' sshd and scp              iproute2, nftables: link-fault tests   zstd: board userland cache
#   chromium: headless screenshots of check reports
set -euo pipefail
PKGS=(mono-devel qemu-user-static debootstrap binfmt-support openssh-server openssh-client iproute2 nftables zstd socat)
[[ ${EDGEPACK_WITH_CHROMIUM:-0} == 1 ]] && PKGS+=(chromium)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "edgepack: error: missing system packages: ${missing[*]} — run: sudo apt-get install ${missing[*]}" >&2
    exit 2
  fi
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
