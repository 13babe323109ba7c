#!/usr/bin/env bash
# System packages the tests need (Debian): headless Chromium for the web page tests, and PostgreSQL's
# server binaries (initdb, pg_ctl), with which the tests start a throwaway cluster of their own (tests/_pg.py).
# Installs only what is missing; needs root (or sudo) the first time.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
# The server binaries live in /usr/lib/postgresql/<version>/bin (not on PATH); the package also
# creates the unprivileged "postgres" user the tests run the cluster as when they run as root.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
  need+=(postgresql)
elif [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  need+=(postgresql)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages: ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
