#!/usr/bin/env bash
# Runs Debian's nginx with deploy/nginx.conf in front of a gunicorn started by bin/start.sh, without
# Docker and without touching the system's nginx configuration (its own prefix under var/nginx).
#   PROXY_PORT     where nginx listens (default 8000)
#   PROXY_BIND     its address (default 0.0.0.0)
#   PORT           gunicorn's port on 127.0.0.1 (default 8080): run `BIND_ADDRESS=127.0.0.1 bin/start.sh`
# Runs in the foreground; Ctrl-C or SIGTERM stops it. Install nginx with `apt-get install nginx-light`.
set -euo pipefail
cd "$(dirname "$0")/.."

nginx="${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}"
if [ ! -x "$nginx" ]; then
  echo "proxy: nginx not found; install it (apt-get install nginx-light) or set NGINX" >&2
  exit 1
fi
prefix="$(pwd)/var/nginx-${PROXY_PORT:-8000}"
mkdir -p "$prefix/temp"
conf="$prefix/nginx.conf"
sed -e "s|__LISTEN__|${PROXY_BIND:-0.0.0.0}:${PROXY_PORT:-8000}|" \
  -e "s|__UPSTREAM__|127.0.0.1:${PORT:-8080}|" \
  -e "s|__PID__|$prefix/nginx.pid|" \
  -e "s|__TEMP__|$prefix/temp|g" \
  deploy/nginx.conf >"$conf"
"$nginx" -t -q -p "$prefix" -c "$conf"
echo "proxy: nginx on ${PROXY_BIND:-0.0.0.0}:${PROXY_PORT:-8000} -> gunicorn 127.0.0.1:${PORT:-8080}" >&2
exec "$nginx" -p "$prefix" -c "$conf" -g "daemon off;"
