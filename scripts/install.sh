#!/usr/bin/env bash
# Installs the built checkout as a system service set, or removes it (docs/operations.md, "Install").
#
#   sudo scripts/install.sh [--prefix /opt/walb-ts] [--bindir /usr/local/bin] [--roles storage,proxy,archive,wdevd]
#                           [--node /usr/bin/node] [--root DIR]
#   sudo scripts/install.sh --uninstall [--purge] [same options]
#
# Build first (`npm run build`, or `bash scripts/setup.sh`): this script copies, it never builds, so that it can
# run as root from a checkout that belongs to someone else. --root DIR (or DESTDIR) installs under DIR as if it
# were /: nothing outside DIR is touched, and the walb user goes into DIR/etc/passwd.
set -euo pipefail

ALL_ROLES=(wdevd storage proxy archive)
BINARIES=(walb-wdevd wdevc walb-storage walb-proxy walb-archive walbc walb-tool)
# Roles that run as the walb user; walb-wdevd and walb-storage run as root (systemd/walb-wdevd.service says why).
USER_ROLES=(proxy archive)
# Every file this script writes outside the prefix starts with this line, and only such files are removed.
MARKER='# Installed by walb-ts scripts/install.sh'

PREFIX=/opt/walb-ts
BINDIR=/usr/local/bin
UNITDIR=/usr/local/lib/systemd/system
SYSUSERS_CONF=/usr/local/lib/sysusers.d/walb-ts.conf
TMPFILES_CONF=/usr/local/lib/tmpfiles.d/walb-ts.conf
CONFDIR=/etc/walb
STATEDIR=/var/lib/walb
ROOT="${DESTDIR:-}"
ROLES_ARG="$(
  IFS=,
  echo "${ALL_ROLES[*]}"
)"
NODE=""
MODE=install
PURGE=0

usage() {
  cat <<EOF
usage: scripts/install.sh [--prefix DIR] [--bindir DIR] [--roles ROLE,...] [--node PATH] [--root DIR]
       scripts/install.sh --uninstall [--purge] [--prefix DIR] [--bindir DIR] [--root DIR]

Installs the built checkout: the program under PREFIX, the commands in BINDIR, the configs in $CONFDIR (only
those missing), the walb user, the state directories under $STATEDIR and the units in $UNITDIR.

options:
  --prefix DIR      where the program goes (default $PREFIX)
  --bindir DIR      where the commands go (default $BINDIR)
  --roles LIST      the servers this host runs, of wdevd,storage,proxy,archive (default all): their units,
                    configs and state directories
  --node PATH       the Node.js the commands and units run (default: node on PATH)
  --root DIR        install under DIR as if it were / (default \$DESTDIR; for images and tests)
  --uninstall       remove the program, the commands and the units; keep $CONFDIR and $STATEDIR
  --purge           with --uninstall: remove $CONFDIR and $STATEDIR too (the volumes' data!)
  -h, --help        print this help
EOF
}

log() { printf 'install: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

while (($# > 0)); do
  case "$1" in
    --prefix) PREFIX="${2:?--prefix needs DIR}" && shift ;;
    --bindir) BINDIR="${2:?--bindir needs DIR}" && shift ;;
    --roles) ROLES_ARG="${2:?--roles needs a list}" && shift ;;
    --node) NODE="${2:?--node needs PATH}" && shift ;;
    --root) ROOT="${2:?--root needs DIR}" && shift ;;
    --uninstall) MODE=uninstall ;;
    --purge) PURGE=1 ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && die "unknown option '$1'" ;;
  esac
  shift
done

[[ "$PREFIX" == /* && "$BINDIR" == /* ]] || die "--prefix and --bindir must be absolute paths"
[[ "$PURGE" == 0 || "$MODE" == uninstall ]] || die "--purge goes with --uninstall"
ROOT="${ROOT%/}"
if [[ -n "$ROOT" ]]; then
  [[ -d "$ROOT" ]] || die "--root $ROOT is not a directory"
  ROOT="$(cd "$ROOT" && pwd)"
fi
IFS=, read -r -a ROLES <<<"$ROLES_ARG"
((${#ROLES[@]} > 0)) || die "--roles names no role (roles: ${ALL_ROLES[*]})"
for role in "${ROLES[@]}"; do
  [[ " ${ALL_ROLES[*]} " == *" $role "* ]] || die "unknown role '$role' (roles: ${ALL_ROLES[*]})"
done

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

has_role() { [[ " ${ROLES[*]} " == *" $1 "* ]]; }
needs_user() {
  local role
  for role in "${USER_ROLES[@]}"; do has_role "$role" && return 0; done
  return 1
}
# systemctl only where this is the running system: not under --root, and with systemd as init.
live_systemd() { [[ -z "$ROOT" && -d /run/systemd/system ]]; }
ours() { [[ -f "$1" ]] && grep -qxF "$MARKER" "$1"; }
# The prefix is replaced or removed whole, so only when it holds walb-ts.
walb_prefix() { [[ -f "$1/package.json" ]] && grep -q '"name": "walb-ts"' "$1/package.json"; }

remove_ours() {
  local f
  for f in "$@"; do
    if ours "$f"; then
      rm -f "$f"
    elif [[ -e "$f" ]]; then
      log "left $f: not written by this script"
    fi
  done
}

# --- uninstall ------------------------------------------------------------------------------------------------
uninstall() {
  local units=() role
  for role in "${ALL_ROLES[@]}"; do
    ours "$ROOT$UNITDIR/walb-$role.service" && units+=("walb-$role.service")
  done
  if ((${#units[@]} > 0)); then
    if live_systemd; then
      systemctl disable --now "${units[@]}"
    else
      systemctl --root="${ROOT:-/}" disable "${units[@]}"
    fi
  fi
  for role in "${ALL_ROLES[@]}"; do remove_ours "$ROOT$UNITDIR/walb-$role.service"; done
  local bin
  for bin in "${BINARIES[@]}"; do remove_ours "$ROOT$BINDIR/$bin"; done
  remove_ours "$ROOT$SYSUSERS_CONF" "$ROOT$TMPFILES_CONF"
  if walb_prefix "$ROOT$PREFIX"; then
    rm -rf "$ROOT$PREFIX"
  elif [[ -e "$ROOT$PREFIX" ]]; then
    log "left $ROOT$PREFIX: no walb-ts there"
  fi
  live_systemd && systemctl daemon-reload
  if ((PURGE)); then
    rm -rf "$ROOT$CONFDIR" "$ROOT$STATEDIR"
    log "removed $CONFDIR and $STATEDIR"
  else
    log "kept $CONFDIR and $STATEDIR (--purge removes them)"
  fi
  # The walb user stays, as Debian keeps system users: files it owned may remain anywhere.
  log "uninstalled"
}

if [[ "$MODE" == uninstall ]]; then
  uninstall
  exit 0
fi

# --- install --------------------------------------------------------------------------------------------------
# The native build: the addon in two parts (the core, and the bulk path with gRPC in C++, loaded only by the
# servers that use it) and walb-tool, a native program.
NATIVE=(build/Release/walb_native.node build/Release/walb_bulk_native.node build/Release/walb-tool)
for f in "${NATIVE[@]}" dist/src/bin/walb-storage.js proto package.json; do
  [[ -e "$SRC/$f" ]] || die "$SRC/$f is missing: build first (npm run build)"
done
command -v systemd-sysusers >/dev/null && command -v systemd-tmpfiles >/dev/null ||
  die "systemd-sysusers and systemd-tmpfiles are needed (Debian package systemd)"

if [[ -z "$NODE" ]]; then
  NODE="$(command -v node)" || die "node not found on PATH; name it with --node PATH"
fi
[[ "$NODE" == /* ]] || die "--node must be an absolute path"
# The units run with ProtectHome=yes: a Node.js under /home or /root (nvm) is invisible to them.
[[ "$NODE" != /home/* && "$NODE" != /root/* ]] || die "$NODE is under a home directory, which the units cannot see; install Node.js system-wide and name it with --node"
# Under --root the target system's Node.js may not be there yet (an image being built).
[[ -n "$ROOT" || -x "$NODE" ]] || die "$NODE is not an executable"

# Nothing is written until every file of the same name is known to be ours.
for bin in "${BINARIES[@]}"; do
  target="$ROOT$BINDIR/$bin"
  [[ ! -e "$target" ]] || ours "$target" || die "$target exists and was not written by this script"
done
for role in "${ROLES[@]}"; do
  unit="$ROOT$UNITDIR/walb-$role.service"
  [[ ! -e "$unit" ]] || ours "$unit" || die "$unit exists and was not written by this script"
done
[[ ! -e "$ROOT$PREFIX" ]] || walb_prefix "$ROOT$PREFIX" || die "$ROOT$PREFIX exists and holds no walb-ts"

# The program: the build, the protos, the docs the units point at and the production dependencies, put together
# beside the prefix and swapped in at once, so that a reinstall never leaves half of two versions.
stage="$ROOT$PREFIX.new"
rm -rf "$stage"
mkdir -p "$stage"
tar -C "$SRC" --owner=0 --group=0 -cf - package.json dist/src "${NATIVE[@]}" proto docs | tar -C "$stage" -xf -
mapfile -t packages < <(cd "$SRC" && npm ls --omit=dev --all --parseable 2>/dev/null | sed -n "s|^$SRC/node_modules/|node_modules/|p")
((${#packages[@]} > 0)) || die "npm ls found no production dependencies in $SRC/node_modules: run npm ci"
for pkg in "${packages[@]}"; do
  mkdir -p "$stage/$pkg"
  # A package's own node_modules holds nested dependencies, which npm ls lists on their own when they are needed.
  tar -C "$SRC/$pkg" --owner=0 --group=0 --exclude=./node_modules -cf - . | tar -C "$stage/$pkg" -xf -
done
chmod -R u+rwX,go+rX,go-w "$stage"
if [[ -e "$ROOT$PREFIX" ]]; then
  rm -rf "$ROOT$PREFIX.old"
  mv "$ROOT$PREFIX" "$ROOT$PREFIX.old"
fi
mv "$stage" "$ROOT$PREFIX"
rm -rf "$ROOT$PREFIX.old"

# The commands: each runs its entry point with the chosen Node.js (exec: the daemon is the unit's main process);
# walb-tool is a native program and runs as it is.
install -d -m 0755 "$ROOT$BINDIR"
for bin in "${BINARIES[@]}"; do
  target="$ROOT$BINDIR/$bin"
  if [[ $bin == walb-tool ]]; then
    command="$PREFIX/build/Release/walb-tool"
  else
    command="$NODE $PREFIX/dist/src/bin/$bin.js"
  fi
  printf '#!/bin/sh\n%s\nexec %s "$@"\n' "$MARKER" "$command" >"$target"
  chmod 0755 "$target"
done

# The walb user, and the state directories with their owners (both resolved inside --root).
install -d -m 0755 "$ROOT/etc" "$ROOT$(dirname "$SYSUSERS_CONF")" "$ROOT$(dirname "$TMPFILES_CONF")"
if needs_user; then
  printf '%s\ng walb -\nu walb -:walb "walb-ts proxy and archive" %s /usr/sbin/nologin\n' \
    "$MARKER" "$STATEDIR" >"$ROOT$SYSUSERS_CONF"
  systemd-sysusers ${ROOT:+--root="$ROOT"} "$(basename "$SYSUSERS_CONF")"
fi
{
  echo "$MARKER"
  echo "d $STATEDIR 0755 root root -"
  for role in "${ROLES[@]}"; do
    if [[ " ${USER_ROLES[*]} " == *" $role "* ]]; then
      echo "d $STATEDIR/$role 0750 walb walb -"
    else
      echo "d $STATEDIR/$role 0750 root root -"
    fi
  done
} >"$ROOT$TMPFILES_CONF"
systemd-tmpfiles ${ROOT:+--root="$ROOT"} --create "$(basename "$TMPFILES_CONF")"

# The configs: an example becomes /etc/walb/NAME only where NAME is missing; an operator's file is never touched.
# (JSON only: config/prometheus-alerts.example.yml is for the Prometheus server, not for walb-ts.)
install -d -m 0755 "$ROOT$CONFDIR"
for example in "$SRC"/config/*.example.json; do
  name="$(basename "$example")"
  name="${name/.example/}"
  role="${name%%.*}"
  if [[ " ${ALL_ROLES[*]} " == *" $role "* ]] && ! has_role "$role"; then continue; fi
  if [[ -e "$ROOT$CONFDIR/$name" ]]; then
    log "kept $CONFDIR/$name"
  else
    install -m 0644 "$example" "$ROOT$CONFDIR/$name"
  fi
done

# The units, pointed at this prefix and this Node.js.
install -d -m 0755 "$ROOT$UNITDIR"
for role in "${ROLES[@]}"; do
  unit="$ROOT$UNITDIR/walb-$role.service"
  {
    printf '%s\n# from systemd/walb-%s.service of the checkout\n' "$MARKER" "$role"
    sed -e "s|/usr/bin/node |$NODE |" -e "s|/opt/walb-ts/|$PREFIX/|g" "$SRC/systemd/walb-$role.service"
  } >"$unit"
  chmod 0644 "$unit"
done
live_systemd && systemctl daemon-reload

units="$(printf 'walb-%s ' "${ROLES[@]}")"
log "installed under ${ROOT:-/}: $PREFIX, $BINDIR/{$(
  IFS=,
  echo "${BINARIES[*]}"
)}, $CONFDIR, $STATEDIR, $UNITDIR"
log "next: edit $CONFDIR/*.json, then systemctl enable --now ${units% }"
