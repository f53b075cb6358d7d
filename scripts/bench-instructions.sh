#!/usr/bin/env bash
# Instructions per request of one worker, counted by callgrind: a number that
# repeats to within about 0.5% run to run, where req/s on a shared 2-core VM
# swings by 2x. Use it to judge a change to the hot path; use scripts/bench.sh
# for throughput and latency.
#
#   scripts/bench-instructions.sh            # tools/call: /servers/{id}/mcp, forwarded, /rpc
#   BENCH_SECS=5 scripts/bench-instructions.sh
#
# A fleet (WORKERS=2, WORKER_THREADS=1) runs under `valgrind --tool=callgrind
# --trace-children=yes`; after a warm-up, both workers' counters are zeroed,
# fleetgate-load drives BENCH_SECS (10) seconds of tools/call with 4
# connections, and the counters are dumped. The first fleet runs on embedded
# defaults (forwards over Unix sockets): the session, forwarded and /rpc rows.
# Then, when redis-server is installed, one fleet per Redis transport
# (AFFINITY_FORWARD=pubsub, http; a throwaway redis-server whose own
# instructions are not counted): the forwarded row again.
# A row is the two workers' instructions together per request: for the
# forwarded row that is the non-owner's forward plus the owner's work, so
# "forwarded - session" is what a forward costs. BENCH_ANNOTATE=1 also prints
# each row's top functions by their own instructions per request (the
# profiles are written with uncompressed names: a dump after zeroing would
# otherwise name functions only by ids defined in earlier dumps).
# valgrind has no SHA-NI: the forward's two HMAC-SHA256 run in software here
# (about 82k of the forwarded row), a tenth of that natively. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
command -v valgrind >/dev/null && command -v callgrind_control >/dev/null \
  || { echo "valgrind (with callgrind_control) is required: apt-get install valgrind" >&2; exit 1; }
SECS=${BENCH_SECS:-10}
cargo build --release -q -p fleetgate -p fleetgate-tests -p fleetgate-test-upstream \
  --bin fleetgate --bin fleetgate-load --bin fleetgate-test-upstream
BIN=$PWD/target/release/fleetgate
LOAD=$PWD/target/release/fleetgate-load
WORK=$(mktemp -d)
PIDS=()
# The processes under callgrind that this run started (their command lines name $WORK).
ours() {
  local p
  for p in $(pgrep -f "cg\.%p" || true); do
    grep -qz "$WORK" "/proc/$p/cmdline" 2>/dev/null && echo "$p"
  done
}
cleanup() {
  local p vg
  vg=$(ours)
  for p in $vg "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 2
  for p in $vg "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in $vg; do rm -f /tmp/vgdb-pipe-*-"$p"-by-* 2>/dev/null || true; done
  [ -n "${BENCH_KEEP:-}" ] && echo "kept: $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "bench-instructions: $*" >&2; exit 1; }

target/release/fleetgate-test-upstream --port 0 >"$WORK/up.out" 2>"$WORK/up.err" &
PIDS+=($!)
for _ in $(seq 1 500); do [ -s "$WORK/up.out" ] && break; sleep 0.01; done
UP_URL=$(python3 -c 'import json,sys;print(json.loads(open(sys.argv[1]).readline())["url"])' "$WORK/up.out")

export JWT_SECRET_KEY=bench-secret-0123456789abcdef0123456789
TOKEN=$("$BIN" token --username bench@example.com --exp 60 --admin 2>/dev/null)
AUTH="Authorization: Bearer $TOKEN"
# start_fleet NAME ENV...: one fleet under callgrind; sets ADDR, SID, WORKERS.
start_fleet() {
  local name=$1; shift
  local port
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  ADDR=127.0.0.1:$port
  (cd "$WORK" && exec env -u REDIS_URL -u AFFINITY_FORWARD "$@" WORKERS=2 WORKER_THREADS=1 REUSE_PORT=true \
    HOST=127.0.0.1 PORT="$port" WORKER_TIMEOUT=600 DATABASE_URL="sqlite:$WORK/$name.db" \
    valgrind --tool=callgrind --trace-children=yes --compress-strings=no --compress-pos=no \
    --callgrind-out-file="$WORK/cg.%p" "$BIN" >"$WORK/$name.log" 2>&1) &
  PIDS+=($!)
  for _ in $(seq 1 600); do curl -fs "http://$ADDR/health" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fs "http://$ADDR/health" >/dev/null || { tail -20 "$WORK/$name.log" >&2; die "fleet $name did not come up"; }
  register "$name"
  sleep 2 # the workers poll the registry
  # The two workers (valgrind's wrapper sits between the shell and the supervisor).
  WORKERS=$(for p in $(ours); do
    tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "fleetgate worker" && echo "$p"; done)
  [ "$(echo "$WORKERS" | wc -w)" = 2 ] || die "expected two worker processes under callgrind, found: $WORKERS"
}
stop_fleet() {
  local p
  for p in $(ours); do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do [ -z "$(ours)" ] && break; sleep 0.1; done
}
# measure LABEL ARGS...: the workers' instructions per request for one fleetgate-load run.
measure() {
  local label=$1; shift
  local w dumps=()
  "$LOAD" "$@" -c 4 -d 2 >/dev/null # warm-up
  # HOST as the fleet has it: valgrind names its control pipe after it.
  for w in $WORKERS; do HOST=127.0.0.1 callgrind_control -z "$w" >/dev/null 2>&1; done
  "$LOAD" "$@" -c 4 -d "$SECS" >"$WORK/load.json"
  for w in $WORKERS; do HOST=127.0.0.1 callgrind_control -d "$w" >/dev/null 2>&1; done
  sleep 1
  for w in $WORKERS; do dumps+=("$(ls -t "$WORK"/cg."$w"* | head -1)"); done
  python3 - "$label" "$WORK/load.json" "${dumps[@]}" <<'PY'
import json, re, sys
label, load, dumps = sys.argv[1], sys.argv[2], sys.argv[3:]
total = 0
for d in dumps:
    m = re.search(r"^(?:summary|totals):\s*(\d+)", open(d).read(), re.M)
    total += int(m.group(1))
n = json.load(open(load))["requests"]
print(f"| {label:<28} | {n:>8} | {total / n:>12.0f} |")
PY
  if [ -n "${BENCH_ANNOTATE:-}" ]; then
    # Own instructions per request by function, over both workers (read from
    # the dumps directly: callgrind_annotate books everything under
    # __libc_start_main for a dump taken after zeroing).
    python3 - "$WORK/load.json" "${dumps[@]}" >&2 <<'PY'
import collections, json, sys
load, dumps = sys.argv[1], sys.argv[2:]
own, fn, after_call = collections.Counter(), None, False
for d in dumps:
    for line in open(d, errors="replace"):
        if line.startswith("fn="):
            fn = line[3:].strip()
        elif line.startswith("calls="):
            after_call = True  # the next cost line is the callee's, inclusive
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_call:
                after_call = False
            elif fn:
                parts = line.split()
                if len(parts) > 1:
                    own[fn] += int(parts[1])
n = json.load(open(load))["requests"]
for f, c in own.most_common(40):
    print(f"  {c / n:>8.0f}  {f[:160]}")
PY
  fi
}

echo "## instructions per tools/call, two workers under callgrind (${SECS}s, 4 connections)"
echo
echo "| path                         | requests | instr/request |"
echo "|------------------------------|----------|---------------|"
CALL='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}'
RPC_CALL='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"up-echo","arguments":{"text":"hi"}}}'
start_fleet unix
measure "/servers/{id}/mcp (session)" --url "http://$ADDR/servers/$SID/mcp" --post "$CALL" \
  --mcp-session -H 'mcp-protocol-version: 2025-06-18' -H "$AUTH"
measure "  100% forwarded (unix)" --url "http://$ADDR/servers/$SID/mcp" --post "$CALL" \
  --mcp-session --forwarded -H 'mcp-protocol-version: 2025-06-18' -H "$AUTH"
measure "/rpc" --url "http://$ADDR/rpc" --post "$RPC_CALL" -H "$AUTH"
stop_fleet

# The Redis transports: a throwaway redis-server (its own instructions are not counted).
if ! command -v redis-server >/dev/null; then
  echo "(redis-server is not installed: the pubsub and http rows are skipped)"
  exit 0
fi
RPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
for t in pubsub http; do
  redis-cli -p "$RPORT" flushall >/dev/null
  start_fleet "$t" REDIS_URL="redis://127.0.0.1:$RPORT" FLEET_SECRET=bench-fleet-secret-0123456789abcdef \
    AFFINITY_FORWARD="$t"
  measure "  100% forwarded ($t)" --url "http://$ADDR/servers/$SID/mcp" --post "$CALL" \
    --mcp-session --forwarded -H 'mcp-protocol-version: 2025-06-18' -H "$AUTH"
  stop_fleet
done
