#!/usr/bin/env bash
# Make headless Chromium available for the page tests: Debian's chromium package (Playwright
# drives it; its own browser download is never used). Does nothing when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
if [ -x "${MICROHIVE_TEST_CHROMIUM:-/usr/bin/chromium}" ] || command -v chromium >/dev/null; then
    exit 0
fi
echo "chromium: not installed, installing Debian's package" >&2
apt_install chromium
