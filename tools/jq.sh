#!/usr/bin/env bash
# Makes sure `jq` is on the PATH for `make test`: tests/e2e/test_seed_clients.py runs the seed's curl steps
# piped into `jq .status`, as a user would. Debian's package if the machine has none.
set -euo pipefail

if ! command -v jq >/dev/null; then
  echo "jq.sh: no jq on this machine; installing Debian's package" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq >/dev/null
fi
