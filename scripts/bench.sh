#!/usr/bin/env bash
# fleetgate benchmarks (not tests): run on an otherwise idle machine.
#
#   scripts/bench.sh            # all sections
#   BENCH_SECS=3 scripts/bench.sh
#
# Section "fleet": /health throughput and latency with WORKERS=1 and 2, keep-alive
# and fresh connections, shared socket vs REUSE_PORT (and how answers spread over
# workers), cold start to a healthy /health, idle RSS per worker.
# Load generator, gateway and upstreams share the machine's cores: read ratios
# measured in one run, not absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECS:-5}
CONNS=${BENCH_CONNS:-32}

cargo build --release -q -p fleetgate -p fleetgate-tests --bin fleetgate --bin fleetgate-load
BIN=target/release/fleetgate
LOAD=target/release/fleetgate-load
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# start_fleet NAME ENV... : starts a supervisor on an ephemeral port; sets ADDR, SUP.
start_fleet() {
  local name=$1; shift
  local out="$WORK/$name.out"
  local t0; t0=$(date +%s%N)
  env PORT=0 LOG_LEVEL=warn "$@" "$BIN" >"$out" 2>"$WORK/$name.err" &
  SUP=$!; PIDS+=("$SUP")
  for _ in $(seq 1 500); do [ -s "$out" ] && break; sleep 0.01; done
  ADDR=$(python3 -c 'import json,sys;print(json.loads(open(sys.argv[1]).readline())["addr"])' "$out")
  until curl -fs "http://$ADDR/health" >/dev/null 2>&1; do sleep 0.005; done
  COLD_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop_fleet() { kill -TERM "$SUP"; wait "$SUP" 2>/dev/null || true; }
rss_kb() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }

row() { # label json
  python3 - "$1" "$2" <<'PY'
import json, sys
label, r = sys.argv[1], json.loads(sys.argv[2])
spread = sorted(r["workers"].values(), reverse=True)
tot = sum(spread) or 1
share = "/".join(f"{100*v//tot}%" for v in spread)
print(f"| {label:<34} | {r['rps']:>9.0f} | {r['p50_us']:>6} | {r['p99_us']:>7} | {r['errors']:>4} | {share:<11} |")
PY
}

echo "## fleet: /health, $CONNS connections, ${SECS}s each"
echo
echo "| case                               |     req/s | p50 µs |  p99 µs | errs | spread      |"
echo "|------------------------------------|-----------|--------|---------|------|-------------|"
for workers in 1 2; do
  for mode in shared reuseport; do
    [ "$workers" = 1 ] && [ "$mode" = reuseport ] && continue
    reuse=false; [ "$mode" = reuseport ] && reuse=true
    start_fleet "w$workers-$mode" WORKERS=$workers REUSE_PORT=$reuse
    for conn in keepalive fresh; do
      flag=""; [ "$conn" = fresh ] && flag="--fresh"
      r=$("$LOAD" --url "http://$ADDR/health" -c "$CONNS" -d "$SECS" $flag)
      row "WORKERS=$workers $mode $conn" "$r"
    done
    stop_fleet
  done
done
echo

start_fleet cold WORKERS=1
sleep 1
W=$(pgrep -P "$SUP" | head -1)
echo "cold start to a healthy /health (WORKERS=1): ${COLD_MS} ms"
echo "idle RSS: supervisor $(rss_kb "$SUP") kB, worker $(rss_kb "$W") kB"
stop_fleet
