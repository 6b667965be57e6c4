#!/usr/bin/env bash
# Time `make demo` as a new user meets it: a clean clone, no .venv, an empty pip cache (so
# llama-cpp-python builds from source). Stops the server once it answers a search; writes
# bench/results/demo-fresh.json with the seconds to installed, to built and to serving.
#   bash bench/fresh_demo.sh [PORT]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${1:-8765}
WORK=$(mktemp -d /tmp/ragkiln-fresh.XXXXXX)
git clone -q "$ROOT" "$WORK/repo"
cd "$WORK/repo"
start=$(date +%s.%N)
PIP_CACHE_DIR="$WORK/pip-cache" PORT=$PORT make demo >"$WORK/demo.log" 2>&1 &
pid=$!
installed="" built=""
while kill -0 $pid 2>/dev/null; do
  now=$(date +%s.%N)
  [ -z "$installed" ] && grep -q "ragkiln build: \[1/" "$WORK/demo.log" && installed=$(echo "$now - $start" | bc)
  [ -z "$built" ] && grep -q "ragkiln is serving" "$WORK/demo.log" && built=$(echo "$now - $start" | bc)
  if curl -sf "localhost:$PORT/v1/search" -H 'content-type: application/json' \
       -d '{"query": "parse command line arguments", "k": 1}' >/dev/null 2>&1; then
    serving=$(echo "$(date +%s.%N) - $start" | bc)
    pkill -P $pid || true; kill $pid 2>/dev/null || true
    pkill -f "serve --host 127.0.0.1 --port $PORT" || true
    mkdir -p "$ROOT/bench/results"
    cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
    simd=$(grep -o -w -E 'avx2|avx512[a-z_0-9]*|amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ' | sed 's/ $//')
    printf '{"command": "bash bench/fresh_demo.sh %s", "cpus": %s, "cpu": "%s", "simd_flags": "%s", "installed_s": %.0f, "built_s": %.0f, "serving_s": %.0f, "target_s": 1500}\n' \
      "$PORT" "$(nproc)" "$cpu" "$simd" "$installed" "$built" "$serving" | tee "$ROOT/bench/results/demo-fresh.json"
    rm -rf "$WORK"
    exit 0
  fi
  sleep 2
done
echo "make demo exited before serving; log: $WORK/demo.log" >&2
exit 1
