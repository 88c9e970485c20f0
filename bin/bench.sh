#!/usr/bin/env bash
# `make bench`: installs what the benchmark needs (wrk from Debian, requirements-bench.txt into .venv),
# then runs bench/run.py: the service and the one-file baseline side by side, results under
# bench/results/. Settings are environment variables (BENCH_DURATION, BENCH_CONNECTIONS,
# BENCH_SCENARIOS, BENCH_QUICK, ...): docs/PERFORMANCE.md. bench/run.py stops every server and
# worker and drops every database it made when it exits, also on error or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

bin/bootstrap.sh runtime

if ! command -v wrk >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bench: installing wrk (apt-get)" >&2
    # Another install may hold the dpkg lock on a shared machine: wait for it rather than fail.
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq wrk >/dev/null ||
      { apt-get -o DPkg::Lock::Timeout=300 update -qq && apt-get -o DPkg::Lock::Timeout=300 install -y -qq wrk >/dev/null; }
  fi
  command -v wrk >/dev/null 2>&1 || {
    echo "bench: wrk is required (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)." >&2
    exit 1
  }
fi

stamp=".venv/.installed-bench"
wanted="$(cat requirements.txt requirements-bench.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "bench: installing requirements-bench.txt" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
  echo "$wanted" >"$stamp"
fi

exec .venv/bin/python -m bench.run "$@"
