#!/usr/bin/env bash
# Builds the libFuzzer harnesses of the format core (native/fuzz) into build-fuzz/ and runs them (docs/testing.md).
#
#   scripts/fuzz.sh [--smoke] [NAME...]     NAME: a harness without "_fuzz" (wlog_reader, ...); default: all
#
# Long runs (`npm run fuzz`) keep what they find in build-fuzz/corpus/NAME and run each harness for
# WALB_FUZZ_SECONDS (default 60) or, when set, WALB_FUZZ_RUNS executions. --smoke (`npm test`) runs each for
# WALB_FUZZ_SMOKE_SECONDS (default 3) from the seeds alone. Crashes are written to build-fuzz/crashes/ and fail
# the script.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD=build-fuzz

smoke=0
names=()
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    -*)
      echo "usage: $0 [--smoke] [NAME...]" >&2
      exit 2
      ;;
    *) names+=("$arg") ;;
  esac
done

command -v clang++ >/dev/null 2>&1 || {
  echo "fuzz: clang++ not found (apt-get install clang libclang-rt-14-dev, or run scripts/setup.sh)" >&2
  exit 1
}
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  CXX=clang++ cmake -S native/fuzz -B "$BUILD" >/dev/null
fi
cmake --build "$BUILD" -j2 >/dev/null

# Seeds are made by the core's own writers: regenerated whenever the seed maker was rebuilt.
if [[ ! -d "$BUILD/seeds" || "$BUILD/make_seeds" -nt "$BUILD/seeds" ]]; then
  rm -rf "$BUILD/seeds"
  "$BUILD/make_seeds" "$BUILD/seeds"
fi

if ((${#names[@]} == 0)); then
  for bin in "$BUILD"/*_fuzz; do
    name="$(basename "$bin")"
    names+=("${name%_fuzz}")
  done
fi

mkdir -p "$BUILD/crashes"
for name in "${names[@]}"; do
  bin="$BUILD/${name}_fuzz"
  [[ -x "$bin" ]] || {
    echo "fuzz: no harness $bin (native/fuzz/${name}_fuzz.cpp)" >&2
    exit 2
  }
  seeds="$BUILD/seeds/${name}_fuzz"
  mkdir -p "$seeds"
  limits=()
  if ((smoke)); then
    corpus="$(mktemp -d)"
    limits=(-max_total_time="${WALB_FUZZ_SMOKE_SECONDS:-3}")
  else
    corpus="$BUILD/corpus/$name"
    mkdir -p "$corpus"
    if [[ -n "${WALB_FUZZ_RUNS:-}" ]]; then
      limits=(-runs="$WALB_FUZZ_RUNS")
    else
      limits=(-max_total_time="${WALB_FUZZ_SECONDS:-60}")
    fi
  fi
  log="$BUILD/$name.log"
  status=0
  "$bin" "${limits[@]}" -print_final_stats=1 -artifact_prefix="$BUILD/crashes/$name-" \
    "$corpus" "$seeds" >"$log" 2>&1 || status=$?
  ((smoke)) && rm -rf "$corpus"
  if ((status != 0)); then
    tail -n 40 "$log" >&2
    echo "fuzz: $name failed (exit $status); log in $log, input in $BUILD/crashes/" >&2
    exit 1
  fi
  runs="$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")"
  rate="$(awk '/stat::average_exec_per_sec/ { print $2 }' "$log")"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)"
  echo "fuzz: $name: $runs runs, $rate exec/s, coverage $cov"
done
