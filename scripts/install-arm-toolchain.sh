#!/usr/bin/env bash
# Installs the aarch64 cross toolchain, qemu-user and ARM Compute Library (arm64) with
# apt-get, only when something is missing: running it again is a no-op. Needs root
# (or sudo) on Debian/Ubuntu. Used by .ci/run before the tests (DESIGN §7).
# The armcl backend's per-layer costs use qemu-user's TCG plugin interface (-plugin,
# present in Debian's qemu-user 7.2, which ships no plugins and no plugin header): edgeq
# builds its own counting plugin with the host gcc, and finds layer boundaries with
# aarch64-linux-gnu-nm (binutils, pulled in by gcc-aarch64-linux-gnu).
set -euo pipefail

have_all() {
    command -v aarch64-linux-gnu-gcc >/dev/null &&
        command -v aarch64-linux-gnu-g++ >/dev/null &&
        command -v qemu-aarch64 >/dev/null &&
        command -v aarch64-linux-gnu-nm >/dev/null &&
        [ -e /usr/aarch64-linux-gnu/lib/libc.a ] &&
        dpkg -s libarm-compute-dev:arm64 >/dev/null 2>&1
}

if have_all; then
    echo "arm toolchain: already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO dpkg --add-architecture arm64
$SUDO apt-get update
$SUDO apt-get install -y gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross \
    qemu-user libarm-compute-dev:arm64
have_all && echo "arm toolchain: installed"
qemu-aarch64 -h | grep -q -- '^-plugin' ||
    echo "warning: this qemu-aarch64 cannot load plugins: no per-layer instruction counts" >&2
