#!/usr/bin/env bash
# Idempotent bootstrap for walb-ts on Debian 12 (used by `npm test` via pretest and by the README quick start).
#
#   1. installs the Debian packages listed below that are missing (as root; otherwise prints the command),
#   2. runs `npm ci` when node_modules is missing or package-lock.json changed since the last successful run,
#   3. runs `npm run build` (incremental cmake-js native build + tsc) every time.
#
# Set WALB_SKIP_SETUP=1 to skip everything (for nested invocations).
set -euo pipefail

# Debian packages needed to build, test and run the demo. Add new ones here.
DEB_PACKAGES=(
  # native build
  cmake g++ make pkg-config
  libzstd-dev liblz4-dev libsnappy-dev libxxhash-dev zlib1g-dev liblzma-dev
  # the native bulk path (full backup) speaks gRPC from C++
  libgrpc++-dev
  # lint
  clang-format
  # native tests of the core (scripts/native-tests.sh): GoogleTest; clang and its runtimes for the fuzzers
  libgtest-dev clang libclang-rt-14-dev
  # block-device tooling for tests, demo and benchmarks
  qemu-utils nbdkit libnbd-bin fio fuse3 e2fsprogs util-linux iproute2 systemd
  # the service manager's end of the readiness test (a unix datagram socket)
  python3
  # the peak memory of walb-tool in tests (GNU time's %M)
  time
  # headless browser of the status page test (test/system/status-page.test.ts)
  chromium
  # benchmark peers
  xxhash rsync
  # runtime of WalB's own tools (../shared/oracle), the peer of the compatibility tests
  libaio1 libsnappy1v5 liblzma5 zlib1g
)

# Lowest supported Node.js major version (package.json "engines").
NODE_MIN_MAJOR=20

log() { printf 'setup: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

if [[ "${WALB_SKIP_SETUP:-}" == 1 ]]; then
  exit 0
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# --- 1. Debian packages -------------------------------------------------------------------------------------
missing_packages() {
  local installed
  # One line per installed package; "ii " / "hi " etc.: the second status letter 'i' means installed.
  # dpkg-query exits non-zero when some name is unknown, which only means "not installed" here.
  installed="$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${DEB_PACKAGES[@]}" 2>/dev/null |
    awk '$2 ~ /^.i/ { print $1 }' || true)"
  local pkg
  for pkg in "${DEB_PACKAGES[@]}"; do
    if ! grep -qxF -- "$pkg" <<<"$installed"; then
      printf '%s\n' "$pkg"
    fi
  done
}

if command -v dpkg-query >/dev/null 2>&1; then
  mapfile -t MISSING < <(missing_packages)
  if ((${#MISSING[@]} > 0)); then
    install_cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${MISSING[*]}"
    if [[ "$(id -u)" != 0 ]]; then
      log "missing Debian packages: ${MISSING[*]}"
      log "install them as root with:"
      log "  sudo sh -c '$install_cmd'"
      exit 1
    fi
    log "installing missing packages: ${MISSING[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -q update </dev/null >&2
    apt-get -q install -y --no-install-recommends "${MISSING[@]}" </dev/null >&2
  fi
else
  log "warning: dpkg-query not found (not Debian?); make sure these are installed: ${DEB_PACKAGES[*]}"
fi

# --- 2. Node.js dependencies --------------------------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found; install Node.js >= $NODE_MIN_MAJOR (e.g. from nodesource)"
command -v npm >/dev/null 2>&1 || die "npm not found; install Node.js >= $NODE_MIN_MAJOR with npm"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
((node_major >= NODE_MIN_MAJOR)) || die "Node.js >= $NODE_MIN_MAJOR required, found $(node --version)"

[[ -f package-lock.json ]] || die "package-lock.json is missing in $ROOT"
STAMP=node_modules/.walb-setup-stamp
lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -d node_modules || ! -f "$STAMP" || "$(cat "$STAMP")" != "$lock_hash" ]]; then
  log "npm ci"
  # npm ci removes node_modules first, so the stamp is only (re)written after a successful install.
  WALB_SKIP_SETUP=1 npm ci --no-audit --no-fund </dev/null >&2
  printf '%s\n' "$lock_hash" >"$STAMP"
fi

# --- 3. Build -----------------------------------------------------------------------------------------------
# cmake-js decides between Node-API mode (headers from the node-api-headers npm package, no network) and
# downloading the full Node.js headers from nodejs.org by looking for "binary": {"napi_versions": [...]} in
# the package.json of the CMake project directory (--directory native), not the repository root.
# Refuse to build rather than let it try to download.
NATIVE_DIR=native
if [[ -f "$NATIVE_DIR/CMakeLists.txt" ]]; then
  node -e '
    const p = require("path").resolve(process.argv[1], "package.json");
    let ok = false;
    try { ok = Array.isArray(require(p).binary.napi_versions); } catch {}
    if (!ok) {
      console.error(`setup: error: ${p} must contain "binary": {"napi_versions": [8]}; without it cmake-js`);
      console.error("setup: error: ignores node-api-headers and tries to download Node.js headers from nodejs.org");
      process.exit(1);
    }' "$NATIVE_DIR"
fi

log "build"
WALB_SKIP_SETUP=1 npm run --silent build </dev/null
