#!/usr/bin/env bash
# Make headless Chromium available for the dashboard's browser tests; print its path on stdout.
# Playwright cannot download its own browser here (no network but package registries), so the tests
# drive Debian's `chromium` package through `executable_path`. Installs it with apt when run as root.
set -euo pipefail
find_it() { for p in /usr/bin/chromium /usr/bin/chromium-browser; do [ -x "$p" ] && { echo "$p"; return 0; }; done; return 1; }
if ! find_it >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) >&2 || true
  fi
fi
find_it || { echo "no chromium and could not install it (needs root and apt)" >&2; exit 3; }
