#!/usr/bin/env bash
# Builds and runs the native tests of the format core (native/test, native/fuzz; docs/testing.md).
#
#   scripts/native-tests.sh [STEP...]     STEP: plain | asan | tsan | fuzz; default: asan tsan fuzz (`npm test`)
#
#   plain  build-tests/: the unit tests and the wdev concurrency test without sanitizers (quick to iterate)
#   asan   build-asan/:  the same with AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan   build-tsan/:  the wdev concurrency test and the threaded unit tests with ThreadSanitizer
#   fuzz   build-fuzz/:  a few seconds of every libFuzzer harness (scripts/fuzz.sh --smoke)
#
# Builds are incremental; the build directories are outside cmake-js's build/ and ignored by git.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# The unit tests whose code runs threads, run again under ThreadSanitizer (the rest are single-threaded).
TSAN_UNIT_TESTS='ReadAhead.*:Ops.*Redo*:Ops.*Merge*:MergeWdiffs.*'
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"

# configure DIR [CMAKE ARGS...]: a test build of native/test in DIR.
configure() {
  local dir="$1"
  shift
  [[ -f "$dir/CMakeCache.txt" ]] || cmake -S native/test -B "$dir" "$@" >/dev/null
}

step() {
  local name="$1" started=$SECONDS
  case "$name" in
    plain | asan)
      local dir=build-tests
      if [[ $name == asan ]]; then
        dir=build-asan
        configure "$dir" -DWALB_SANITIZE=address,undefined
      else
        configure "$dir"
      fi
      cmake --build "$dir" -j2 >/dev/null
      "$dir/core_unit_tests" --gtest_brief=1
      "$dir/wdev_concurrency_test" --gtest_brief=1
      ;;
    tsan)
      configure build-tsan -DWALB_SANITIZE=thread
      cmake --build build-tsan -j2 --target wdev_concurrency_test core_unit_tests >/dev/null
      build-tsan/wdev_concurrency_test --gtest_brief=1
      # The unit tests whose code runs threads: read-ahead, redo and merges (readers a few batches ahead).
      build-tsan/core_unit_tests --gtest_brief=1 --gtest_filter="$TSAN_UNIT_TESTS"
      ;;
    fuzz)
      bash scripts/fuzz.sh --smoke
      ;;
    *)
      echo "usage: $0 [plain|asan|tsan|fuzz]..." >&2
      exit 2
      ;;
  esac
  echo "native-tests: $name passed in $((SECONDS - started)) s"
}

steps=("$@")
((${#steps[@]} > 0)) || steps=(asan tsan fuzz)
for s in "${steps[@]}"; do
  step "$s"
done
