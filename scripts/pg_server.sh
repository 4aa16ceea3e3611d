#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the test suite; print its URL on stdout.
# Usage: scripts/pg_server.sh start DIR  |  scripts/pg_server.sh stop DIR
# Installs Debian's postgresql package when no server binaries are present. As root, the server
# runs as the 'postgres' user (PostgreSQL refuses to run as root).
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?data dir}

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ "$cmd" = stop ]; then
  b=$(bindir); [ -n "$b" ] && [ -d "$dir/data" ] && as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; } && as_pg "$b/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  exit 0
fi

b=$(bindir)
if [ -z "$b" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2 || true
  fi
  b=$(bindir)
  [ -n "$b" ] || { echo "no PostgreSQL server binaries and could not install them" >&2; exit 3; }
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$b/initdb" -D "$dir/data" -U mixtrain --auth=trust -E UTF8 >/dev/null
as_pg "$b/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
  -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
as_pg "$b/createdb" -h 127.0.0.1 -p "$port" -U mixtrain mixtrain_test
echo "postgresql+psycopg2://mixtrain@127.0.0.1:$port/mixtrain_test"
