#!/usr/bin/env bash
# Installs the offline data the project uses: Debian's Fashion-MNIST (for FashionComposites).
# Needs root (CI and the development machines run as root); prints what to do otherwise.
set -euo pipefail
if dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "protoexplain: Fashion-MNIST is missing; run: sudo apt-get install dataset-fashion-mnist" >&2
    exit 0
fi
echo "protoexplain: installing Debian's dataset-fashion-mnist"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
