#!/usr/bin/env bash
# Installs the npm dependencies when node_modules is missing or older than package-lock.json, so that
# `npm test` and `npm run demo` work on a fresh clone without a separate install step.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[deps] installing npm dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
fi
