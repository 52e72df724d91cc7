#!/usr/bin/env bash
# Install Debian's headless-capable Chromium when /usr/bin/chromium is missing (idempotent, quiet).
# The browser test of the HTML report (tests/test_report_browser.py) needs it.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "ensure-chromium: /usr/bin/chromium is missing and this user cannot install packages (not root, no sudo)" >&2
        exit 1
    fi
fi

echo "ensure-chromium: installing chromium (apt-get)..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null

if [ ! -x /usr/bin/chromium ]; then
    echo "ensure-chromium: apt-get finished but /usr/bin/chromium is still missing" >&2
    exit 1
fi
echo "ensure-chromium: $(/usr/bin/chromium --version 2>/dev/null || echo chromium installed)" >&2
