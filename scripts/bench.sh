#!/usr/bin/env bash
# fleetgate benchmarks (not tests): run on an otherwise idle machine.
#
#   scripts/bench.sh            # all sections
#   BENCH_SECS=3 scripts/bench.sh
#
# Sections (BENCH_ONLY=fleet|gateway to run one):
# "fleet": /health throughput and latency with WORKERS=1 and 2, keep-alive
# and fresh connections, shared socket vs REUSE_PORT (and how answers spread over
# workers), cold start to a healthy /health, idle RSS per worker.
# "gateway": tools/call through /rpc and through /servers/{id}/mcp with sessions,
# against the same test upstream called directly; req/s, p50/p99, ratio to direct,
# gateway CPU time per request, idle worker RSS, cold start.
# BENCH_REUSE_PORT=true runs the gateway section with one SO_REUSEPORT socket per
# worker (even spread of keep-alive connections).
# Load generator, gateway and upstreams share the machine's cores: read ratios
# measured in one run, not absolute numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECS:-5}
CONNS=${BENCH_CONNS:-32}

ONLY=${BENCH_ONLY:-all}
cargo build --release -q -p fleetgate -p fleetgate-tests -p fleetgate-test-upstream \
  --bin fleetgate --bin fleetgate-load --bin fleetgate-test-upstream
BIN=target/release/fleetgate
LOAD=target/release/fleetgate-load
UPSTREAM=target/release/fleetgate-test-upstream
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

if [ "$ONLY" = all ] || [ "$ONLY" = fleet ]; then
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
fi

cpu_ticks() { # sum of utime+stime of the supervisor's children
  local t=0
  for p in $(pgrep -P "$1"); do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo $t
}

if [ "$ONLY" = all ] || [ "$ONLY" = gateway ]; then
  "$UPSTREAM" --port 0 >"$WORK/up.out" 2>"$WORK/up.err" &
  UP=$!; PIDS+=("$UP")
  for _ in $(seq 1 500); do [ -s "$WORK/up.out" ] && break; sleep 0.01; done
  UP_URL=$(python3 -c 'import json,sys;print(json.loads(open(sys.argv[1]).readline())["url"])' "$WORK/up.out")

  # Auth stays on, as in production: every request carries an admin token.
  export JWT_SECRET_KEY=bench-secret-0123456789abcdef0123456789
  TOKEN=$("$BIN" token --username bench@example.com --exp 60 --admin 2>/dev/null)
  AUTH="Authorization: Bearer $TOKEN"
  start_fleet gw WORKERS=2 REUSE_PORT="${BENCH_REUSE_PORT:-false}" DATABASE_URL="sqlite:$WORK/bench.db"
  curl -fs -X POST "http://$ADDR/gateways" -H "$AUTH" -H 'content-type: application/json' \
    -d "{\"name\":\"up\",\"url\":\"$UP_URL\",\"transport\":\"STREAMABLEHTTP\"}" >/dev/null
  TOOL_IDS=$(curl -fs -H "$AUTH" "http://$ADDR/tools?limit=0" | python3 -c 'import json,sys;print(json.dumps([t["id"] for t in json.load(sys.stdin)]))')
  SID=$(curl -fs -X POST "http://$ADDR/servers" -H "$AUTH" -H 'content-type: application/json' \
    -d "{\"server\":{\"name\":\"bench\",\"associated_tools\":$TOOL_IDS}}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
  sleep 1 # every worker polls the registry (REGISTRY_POLL_INTERVAL)

  CALL='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}'
  RPC_CALL='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"up-echo","arguments":{"text":"hi"}}}'
  HDR=(-H 'mcp-protocol-version: 2025-06-18')

  echo "## gateway: tools/call (echo), WORKERS=2, $CONNS connections, ${SECS}s each"
  echo
  echo "| path                               |     req/s | p50 µs |  p99 µs | errs | spread      |"
  echo "|------------------------------------|-----------|--------|---------|------|-------------|"
  direct=$("$LOAD" --url "$UP_URL" -c "$CONNS" -d "$SECS" --post "$CALL" --mcp-session "${HDR[@]}")
  row "direct upstream (session)" "$direct"
  t0=$(cpu_ticks "$SUP")
  rpc=$("$LOAD" --url "http://$ADDR/rpc" -c "$CONNS" -d "$SECS" --post "$RPC_CALL" -H "$AUTH")
  t1=$(cpu_ticks "$SUP")
  row "/rpc" "$rpc"
  mcp=$("$LOAD" --url "http://$ADDR/servers/$SID/mcp" -c "$CONNS" -d "$SECS" --post "$CALL" --mcp-session "${HDR[@]}" -H "$AUTH")
  t2=$(cpu_ticks "$SUP")
  row "/servers/{id}/mcp (sessions)" "$mcp"
  fwd=$("$LOAD" --url "http://$ADDR/servers/$SID/mcp" -c "$CONNS" -d "$SECS" --post "$CALL" --mcp-session --forwarded "${HDR[@]}" -H "$AUTH")
  row "  same, 100% forwarded (unix)" "$fwd"
  echo
  python3 - "$direct" "$rpc" "$mcp" "$((t1 - t0))" "$((t2 - t1))" "$(getconf CLK_TCK)" "$fwd" <<'PY'
import json, sys
d, r, m = (json.loads(a) for a in sys.argv[1:4])
rt, mt, hz = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
f = json.loads(sys.argv[7])
print(f"forwarding: +{f['p50_us'] - m['p50_us']} µs at p50 over local; "
      f"throughput {100 * f['rps'] / max(m['rps'], 1):.0f}% of all-local")
for label, x, ticks in (("/rpc", r, rt), ("/servers/{id}/mcp", m, mt)):
    ratio = x["rps"] / d["rps"] if d["rps"] else 0
    cpu_us = ticks / hz * 1e6 / max(x["requests"], 1)
    print(f"{label}: {100*ratio:.0f}% of direct throughput; gateway CPU {cpu_us:.0f} µs/request")
PY
  for w in $(pgrep -P "$SUP"); do echo "worker $w RSS after load: $(rss_kb "$w") kB"; done
  stop_fleet
fi
