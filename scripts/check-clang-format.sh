#!/usr/bin/env bash
# Check (default) or fix (--fix) formatting of the C++ sources under native/ with clang-format (.clang-format).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

mode=check
case "${1:-}" in
  '') ;;
  --fix) mode=fix ;;
  *)
    echo "usage: $0 [--fix]" >&2
    exit 2
    ;;
esac

command -v clang-format >/dev/null 2>&1 || {
  echo "check-clang-format: clang-format not found (apt-get install clang-format, or run scripts/setup.sh)" >&2
  exit 1
}

files=()
if [[ -d native ]]; then
  mapfile -d '' -t files < <(
    find native \( -name build -o -name 'build-*' \) -prune -o \
      -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.cc' \) -print0 | sort -z
  )
fi
((${#files[@]} > 0)) || exit 0

if [[ $mode == fix ]]; then
  clang-format --style=file -i -- "${files[@]}"
else
  if ! clang-format --style=file --dry-run --Werror -- "${files[@]}"; then
    echo "check-clang-format: formatting differs; run 'npm run format' (or scripts/check-clang-format.sh --fix)" >&2
    exit 1
  fi
fi
