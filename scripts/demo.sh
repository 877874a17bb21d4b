#!/usr/bin/env bash
# The README's main job. For now: a full round of the format core on a generated workload, with walb-tool as an
# operator would run it: generate logs, convert them to diffs, merge, redo onto images and check that every path
# gives the same bytes. Everything happens in a temporary directory that is removed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
tool() { node "$ROOT/dist/src/bin/walb-tool.js" "$@"; }
step() { printf '\n== %s\n' "$*"; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/walb-demo.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
SIZE=256M

step "generate two consecutive workloads (64 MiB each, overlapping writes, discards, zero blocks, ring wrap-around)"
tool wlog gen -o 1.wlog --size $SIZE --amount 64M --max-io 64K --discard-ratio 0.02 --allzero-ratio 0.05 --ring 100000 --seed 1
end1=$(tool wlog verify 1.wlog --json | node -p 'JSON.parse(require("fs").readFileSync(0)).endLsid')
tool wlog gen -o 2.wlog --size $SIZE --amount 64M --max-io 64K --data compressible --lsid "$end1" --ring 100000 --seed 2
tool wlog verify 2.wlog

step "convert each wlog to a wdiff (sorted and indexed) and merge them"
tool wlog to-wdiff 1.wlog -o 1.wdiff
tool wlog to-wdiff 2.wlog -o 2.wdiff --indexed
tool wdiff verify 2.wdiff
tool wdiff merge 1.wdiff 2.wdiff -o merged.wdiff

step "redo: the logs in log order, the diffs one by one, the merged diff, and a virtual full read"
truncate -s $SIZE by-wlog.img by-wdiff.img by-merged.img base.img
tool wlog redo 1.wlog by-wlog.img --discard zero
tool wlog redo 2.wlog by-wlog.img --discard zero
tool wdiff redo 1.wdiff by-wdiff.img --discard zero
tool wdiff redo 2.wdiff by-wdiff.img --discard zero
tool wdiff redo merged.wdiff by-merged.img --discard zero
tool virt-full-cat base.img 1.wdiff 2.wdiff -o virtual.img

step "compare (XXH3-128 of each image)"
expected=$(tool hash by-wlog.img --json | node -p 'JSON.parse(require("fs").readFileSync(0)).whole')
status=0
for img in by-wdiff.img by-merged.img virtual.img; do
  h=$(tool hash "$img" --json | node -p 'JSON.parse(require("fs").readFileSync(0)).whole')
  if [[ "$h" == "$expected" ]]; then echo "same   $h  $img"; else echo "DIFFER $h  $img"; status=1; fi
done
echo "       $expected  by-wlog.img"
[[ $status == 0 ]] && printf '\nall four paths give the same image.\n' || printf '\nimages differ!\n'
exit $status
