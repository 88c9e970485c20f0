#!/usr/bin/env bash
# Makes sure .venv exists and holds the pinned requirements; reinstalls only when they change.
# Usage: bin/bootstrap.sh [runtime|dev]   (default: runtime)
set -euo pipefail
cd "$(dirname "$0")/.."

profile="${1:-runtime}"
requirements="requirements.txt"
[ "$profile" = dev ] && requirements="requirements-dev.txt"

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "bootstrap: $python not found; install Python 3.11 or newer." >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "bootstrap: Python 3.11 or newer is required ($("$python" --version 2>&1) found)." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv" >&2
  "$python" -m venv .venv
fi

stamp=".venv/.installed-$profile"
wanted="$(cat requirements*.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "bootstrap: installing $requirements" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" >"$stamp"
fi
