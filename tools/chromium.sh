#!/usr/bin/env bash
# Makes sure Debian's chromium is at /usr/bin/chromium for `make test`: tests/e2e/test_console_browser.py drives
# it with playwright-core (which downloads no browser of its own). Debian's package if the machine has none.
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
  echo "chromium.sh: no /usr/bin/chromium on this machine; installing Debian's package" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
