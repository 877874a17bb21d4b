#!/usr/bin/env bash
# The README's main job: a local backup group on loopback (walb-wdevd, walb-storage, walb-proxy, walb-archive) with
# file-backed devices in a temporary directory: ext4 on a wdev, full backup, files, snapshot, restore on the
# archive, check. See src/demo/local-group.ts. Everything is removed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
exec node "$ROOT/dist/src/demo/local-group.js"
