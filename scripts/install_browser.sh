#!/usr/bin/env bash
# Installs the browser the report's tests drive: Debian's chromium (Playwright launches it by
# path; its own browser download is never used). Needs root (CI and the development machines
# run as root); prints what to do otherwise, and the browser tests are then skipped.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "protoexplain: chromium is missing, so the report's browser tests will be skipped;" \
         "run: sudo apt-get install chromium" >&2
    exit 0
fi
echo "protoexplain: installing Debian's chromium for the report's browser tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
