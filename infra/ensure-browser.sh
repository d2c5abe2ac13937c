#!/usr/bin/env bash
# Makes sure a Chromium for the console's browser tests is installed: Debian's `chromium` package,
# installed with apt-get when the binary is missing (the tests drive it with playwright-core; no tool
# ever downloads a browser build of its own). Prints the binary's path on stdout.
#
#   infra/ensure-browser.sh          install if missing (needs root or passwordless sudo), print the path
#   infra/ensure-browser.sh --check  only print the path; exit 1 when it is missing
#
# Settings (environment): CHROMIUM_PATH (default /usr/bin/chromium), APT_LOCK_TIMEOUT seconds (300: how
# long to wait for another apt/dpkg run to finish).
set -euo pipefail

CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
LOCK_TIMEOUT="${APT_LOCK_TIMEOUT:-300}"

log() { printf '[browser] %s\n' "$*" >&2; }

usable() { [ -x "$CHROMIUM" ] && "$CHROMIUM" --version >/dev/null 2>&1; }

if usable; then
  echo "$CHROMIUM"
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  log "$CHROMIUM is missing (run infra/ensure-browser.sh to install Debian's chromium)"
  exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    log "cannot install chromium: not root and no passwordless sudo (install the package 'chromium' yourself)"
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "cannot install chromium: no apt-get on this machine (install Chromium and set CHROMIUM_PATH)"
  exit 1
fi

apt_get() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o "DPkg::Lock::Timeout=$LOCK_TIMEOUT" "$@"; }

log "installing Debian's chromium (apt-get install -y chromium)"
if ! apt_get install -y --no-install-recommends chromium >&2; then
  log "first attempt failed; refreshing the package lists (apt-get update) and trying again"
  apt_get update >&2
  apt_get install -y --no-install-recommends chromium >&2
fi
if ! usable; then
  log "chromium was installed but $CHROMIUM does not run"
  exit 1
fi
log "installed: $("$CHROMIUM" --version 2>/dev/null)"
echo "$CHROMIUM"
