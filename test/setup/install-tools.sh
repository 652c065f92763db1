#!/usr/bin/env bash
# Installs the Debian packages some tests drive for real (Chromium for the status
# page's browser test, redis-server for the Redis tier), when they are missing and this machine can install them:
# root (or passwordless sudo) and apt-get. Anything else: one line, and those tests
# skip with their own one-line reason. Never fails the test run.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "test tools: no apt-get here; tests needing ${need[*]} will skip" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
    echo "test tools: not root and no passwordless sudo; tests needing ${need[*]} will skip" >&2
    exit 0
  fi
fi
echo "test tools: installing ${need[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
  { $sudo apt-get update -q >/dev/null 2>&1 && $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1; }; }; then
  echo "test tools: installing ${need[*]} failed; tests needing it will skip" >&2
fi
exit 0
