#!/usr/bin/env bash
# fleetgate benchmarks (not tests): run on an otherwise idle machine.
#
#   scripts/bench.sh            # all sections
#   BENCH_SECS=3 scripts/bench.sh
#   BENCH_ONLY=gateway BENCH_SECS=1 scripts/bench.sh    # a quick smoke run
#
# Sections (BENCH_ONLY=fleet|gateway|idle to run one):
#
# "fleet": /health throughput and latency with WORKERS=1 and 2, keep-alive
# and fresh connections, shared socket vs REUSE_PORT (and how answers spread over
# workers), cold start to a healthy /health, idle RSS per worker.
#
# "idle": BENCH_IDLE_SESSIONS (1000) MCP sessions, each with one call made (so
# each holds an upstream session and that session's standalone GET stream),
# left idle, WORKERS=1: the worker's RSS per 1,000 such sessions, and its CPU
# over 10 s of idleness.
#
# "gateway": stateful MCP tools/call (the test upstream's echo), WORKERS=2, auth on.
# Rows, BENCH_CONNS (32) closed-loop connections for BENCH_SECS (5) each unless
# marked c=1:
#   direct upstream (session)   the test upstream called straight, the baseline
#   /rpc                        JSON-RPC through the gateway (stateless)
#   direct upstream (2026-07-28) / /servers/{id}/mcp 2026-07-28
#                               the same call in the session-less era (`_meta`,
#                               Mcp-Method/Mcp-Name), straight and through the
#                               gateway (after the unix rows of each round)
# then, for each session-forwarding transport -- "unix" (one host, no Redis), and
# "pubsub" / "http" (a fleet on a throwaway redis-server with REDIS_URL,
# FLEET_SECRET and AFFINITY_FORWARD=pubsub|http; skipped when redis-server is not
# installed) -- on /servers/{id}/mcp:
#   all-local                   each client's load follows its initialize on the
#                               same keep-alive connection: the owner serves it
#   100% forwarded              the load goes on a connection another worker
#                               accepted: every request is forwarded to the owner
#   spread                      sessions spread evenly over the N workers, as an
#                               even load balancer places them: every N-th client
#                               all-local, the others forwarded, so exactly
#                               (N-1)/N of the sessions are forwarded in every run
#   c=1 all-local / forwarded   one client, unsaturated, BENCH_C1_SECS (3) each:
#                               the latency forwarding adds, without queueing
#   ... one core                the same two rows with every process of the
#                               run (load generator, workers, upstream, Redis)
#                               pinned to one CPU (the first the script may
#                               use; taskset), then unpinned again
# Columns: "fwd" is the share of requests sent to a worker that is not the
# session's owner (fleetgate-load learns a connection's worker with one /health
# probe on it; in a closed loop forwarded sessions run slower, so in the spread
# row their share of requests is below their share of sessions, which the summary
# gives too); "spread" is how the answers divide over the workers that produced
# them (a forwarded answer names its owner). A 200 carrying a JSON-RPC error
# counts as an error, not a served request.
# The summary gives /rpc and /servers/{id}/mcp (the unix all-local row) as % of
# direct with the fleet's CPU µs/request, and per transport: "+X µs p50 at c=1"
# (forwarded minus local, both c=1 on one core; target < 150 µs; beside it the
# same difference as the scheduler placed the processes), "100% forwarded: Y% of
# all-local" and "spread: Z% of all-local" (saturated, against the same fleet's
# all-local row; target for spread >= 70%). Rows with errors are listed as
# WARNING lines.
#
# The gateway fleets use REUSE_PORT=true (one SO_REUSEPORT socket per worker)
# unless BENCH_REUSE_PORT=false: with one shared socket the keep-alive connections
# of a single load generator often all land on one worker (100%/0% spreads
# measured), which leaves a core idle and measures one worker, not the fleet;
# SO_REUSEPORT hashes them evenly over the workers. The heading says which mode
# ran. WORKER_THREADS is passed on only if the caller set it (the binary defaults
# to cores / workers runtime threads per worker).
#
# Rounds: the gateway rows run BENCH_ROUNDS (3) times, interleaved (direct, /rpc
# and the unix rows on one fleet, then each Redis fleet's rows), and the summary
# judges each target by the median over rounds, with the range beside it: on this
# shared 2-core VM one 5 s row swings by 20-30% from one minute to the next, so a
# ratio of two rows taken a minute apart says more about the minute than about
# the gateway. Every round's rows are in the table.
#
# Load generator, gateway, Redis and upstream share the machine's cores: read
# ratios measured in one run, not absolute numbers.
#
# Why the c=1 target is judged on one core: at c=1 a request is a chain of
# hand-offs between processes (client -> worker -> upstream and back; a forward
# adds two, a pub/sub forward four, through Redis), and with two cores the
# scheduler wakes nearly every one of them on the other, idle, core. On this KVM
# guest (cpuidle haltpoll with guest_halt_poll_ns=0) waking an idle vCPU costs
# a VM exit and a host reschedule, about 25-30 µs each time, and swings with the
# host's load: the c=1 all-local row alone moves between 117 and 201 µs from one
# round to the next. On one core the same chain is context switches, and the
# rows repeat to within a few µs (all-local 40-45 µs; a pub/sub forward adds
# 60-70 µs, an HTTP or Unix one 30-45 µs, measured).
# The summary prints the ping-pong of two processes both ways, so the price of
# a cross-core hand-off on the machine at hand is on the page, and the
# scheduler-placed difference beside the judged one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-lib.sh
SECS=${BENCH_SECS:-5}
CONNS=${BENCH_CONNS:-32}
C1_SECS=${BENCH_C1_SECS:-$(awk -v s="$SECS" 'BEGIN { print (s < 3 ? s : 3) }')}
ROUNDS=${BENCH_ROUNDS:-3}

ONLY=${BENCH_ONLY:-all}
cargo build --release -q -p fleetgate -p fleetgate-tests -p fleetgate-test-upstream \
  --bin fleetgate --bin fleetgate-load --bin fleetgate-test-upstream
BIN=target/release/fleetgate
LOAD=target/release/fleetgate-load
UPSTREAM=target/release/fleetgate-test-upstream
WORK=$(mktemp -d)
PIDS=()
forget() { local p keep=(); for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; PIDS=("${keep[@]}"); }
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 1 100); do # up to 10 s to drain, then KILL what is left
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "bench: $*" >&2; exit 1; }

# start_fleet NAME ENV... : starts a supervisor on an ephemeral port; sets ADDR, SUP.
# A caller's REDIS_URL / AFFINITY_FORWARD do not leak in: only ENV... sets them.
start_fleet() {
  local name=$1; shift
  local out="$WORK/$name.out" err="$WORK/$name.err"
  local t0; t0=$(date +%s%N)
  env -u REDIS_URL -u AFFINITY_FORWARD PORT=0 LOG_LEVEL=warn "$@" "$BIN" >"$out" 2>"$err" &
  SUP=$!; PIDS+=("$SUP")
  for _ in $(seq 1 1000); do
    [ -s "$out" ] && break
    kill -0 "$SUP" 2>/dev/null || { cat "$err" >&2; die "fleet $name exited before listening"; }
    sleep 0.01
  done
  [ -s "$out" ] || { cat "$err" >&2; die "fleet $name printed no address in 10 s"; }
  ADDR=$(python3 -c 'import json,sys;print(json.loads(open(sys.argv[1]).readline())["addr"])' "$out")
  for _ in $(seq 1 2000); do
    curl -fs "http://$ADDR/health" >/dev/null 2>&1 && break
    kill -0 "$SUP" 2>/dev/null || { cat "$err" >&2; die "fleet $name exited before healthy"; }
    sleep 0.005
  done
  curl -fs "http://$ADDR/health" >/dev/null 2>&1 || { cat "$err" >&2; die "fleet $name not healthy"; }
  COLD_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop_fleet() { kill -TERM "$SUP" 2>/dev/null || true; wait "$SUP" 2>/dev/null || true; forget "$SUP"; }
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

start_upstream() { # sets UP, UP_URL
  "$UPSTREAM" --port 0 >"$WORK/up.out" 2>"$WORK/up.err" &
  UP=$!; PIDS+=("$UP")
  for _ in $(seq 1 500); do [ -s "$WORK/up.out" ] && break; sleep 0.01; done
  [ -s "$WORK/up.out" ] || { cat "$WORK/up.err" >&2; die "test upstream printed no address"; }
  UP_URL=$(python3 -c 'import json,sys;print(json.loads(open(sys.argv[1]).readline())["url"])' "$WORK/up.out")
}

if [ "$ONLY" = all ] || [ "$ONLY" = idle ]; then
  N=${BENCH_IDLE_SESSIONS:-1000}
  start_upstream
  start_fleet idle WORKERS=1 AUTH_REQUIRED=false DATABASE_URL="sqlite:$WORK/bench-idle.db"
  AUTH="x-bench: idle"
  register idle
  sleep 1
  W=$(pgrep -P "$SUP" | head -1)
  RSS0=$(rss_kb "$W")
  python3 - "http://$ADDR/servers/$SID/mcp" "$N" <<'PY' || die "idle: opening sessions failed"
import http.client, json, sys, urllib.parse
url, n = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection(url.hostname, url.port)
def post(body, sid=None):
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream",
         "mcp-protocol-version": "2025-06-18"}
    if sid: h["mcp-session-id"] = sid
    conn.request("POST", url.path, json.dumps(body), h)
    r = conn.getresponse(); r.read()
    if r.status >= 300: sys.exit(f"HTTP {r.status}")
    return r.getheader("mcp-session-id")
for i in range(n):
    sid = post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}})
    post({"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
          "params": {"name": "echo", "arguments": {"text": "hi"}}}, sid)
PY
  sleep 1
  RSS1=$(rss_kb "$W")
  C0=$(awk '{print $14+$15}' "/proc/$W/stat"); sleep 10; C1=$(awk '{print $14+$15}' "/proc/$W/stat")
  STREAMS=$(curl -fs "${UP_URL%/mcp}/stats" | python3 -c 'import json,sys;print(json.load(sys.stdin).get("live_sessions","?"))')
  echo "## idle: $N sessions (one call each), WORKERS=1"
  echo "worker RSS: $RSS0 kB before, $RSS1 kB after ($(( (RSS1 - RSS0) * 1000 / N )) kB per 1,000 sessions); upstream live sessions: $STREAMS"
  echo "worker CPU over 10 s idle: $((C1 - C0)) ticks ($(getconf CLK_TCK)/s)"
  stop_fleet
  kill -TERM "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; forget "$UP"
  echo
fi

if [ "$ONLY" = all ] || [ "$ONLY" = gateway ]; then
  GW_T0=$(date +%s)
  RES="$WORK/results"; mkdir -p "$RES"
  # grow KEY LABEL ARGS... : one fleetgate-load run (ARGS) kept as $RES/KEY.json,
  # printed as a table row, and the fleet's CPU ticks during it as $RES/KEY.cpu.
  grow() {
    local key=$1 label=$2; shift 2
    local c0=0 r; [ -n "${SUP:-}" ] && c0=$(cpu_ticks "$SUP")
    r=$(${PIN[@]+"${PIN[@]}"} "$LOAD" "$@") || die "fleetgate-load failed for $label"
    [ -n "${SUP:-}" ] && echo $(($(cpu_ticks "$SUP") - c0)) >"$RES/$key.cpu"
    printf '%s\n' "$r" >"$RES/$key.json"
    python3 - "$label" "$r" <<'PY'
import json, sys
label, r = sys.argv[1], json.loads(sys.argv[2])
spread = sorted(r["workers"].values(), reverse=True)
tot = sum(spread) or 1
share = "/".join(f"{100*v//tot}%" for v in spread)
fleet = r["session_placement"] and set(r["workers"]) != {"-"}
fwd = f"{100 * r['forwarded_requests'] / max(r['requests'], 1):.0f}%" if fleet else "-"
print(f"| {label:<38} | {r['connections']:>3} | {r['rps']:>9.0f} | {r['p50_us']:>6} | {r['p99_us']:>7} | {r['errors']:>4} | {fwd:>4} | {share:<11} |")
PY
  }

  start_upstream

  # Auth stays on, as in production: every request carries an admin token.
  export JWT_SECRET_KEY=bench-secret-0123456789abcdef0123456789
  TOKEN=$("$BIN" token --username bench@example.com --exp 60 --admin 2>/dev/null)
  AUTH="Authorization: Bearer $TOKEN"
  REUSE=${BENCH_REUSE_PORT:-true}
  if [ "$REUSE" = true ]; then SOCKET="REUSE_PORT=true (an SO_REUSEPORT socket per worker)"
  else SOCKET="REUSE_PORT=$REUSE (one shared socket)"; fi
  FLEET_ENV=(WORKERS=2 REUSE_PORT="$REUSE")
  if [ -n "${WORKER_THREADS:-}" ]; then
    THREADS="WORKER_THREADS=$WORKER_THREADS"; FLEET_ENV+=(WORKER_THREADS="$WORKER_THREADS")
  else
    THREADS="WORKER_THREADS default (cores/workers)"
  fi


  CALL='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}'
  RPC_CALL='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"up-echo","arguments":{"text":"hi"}}}'
  HDR=(-H 'mcp-protocol-version: 2025-06-18')
  # The 2026-07-28 era: no session, `_meta` and the Mcp-Method/Mcp-Name headers
  # on every request.
  META='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"bench","version":"0"},"io.modelcontextprotocol/clientCapabilities":{}}'
  CALL26='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},'"$META"'}}'
  HDR26=(-H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/call' -H 'mcp-name: echo')

  # affinity_rows T R: round R of the session rows on the running fleet,
  # forwarding over T.
  affinity_rows() {
    local t=$1 r=$2
    local mcp=(--url "http://$ADDR/servers/$SID/mcp" --post "$CALL" --mcp-session "${HDR[@]}" -H "$AUTH")
    grow "$t-local.$r" "/servers/{id}/mcp all-local ($t) #$r" -c "$CONNS" -d "$SECS" "${mcp[@]}"
    grow "$t-fwd.$r" "  100% forwarded ($t)" -c "$CONNS" -d "$SECS" "${mcp[@]}" --forwarded
    grow "$t-spread.$r" "  spread over workers ($t)" -c "$CONNS" -d "$SECS" "${mcp[@]}" --spread
    grow "$t-c1-local.$r" "  c=1 all-local ($t)" -c 1 -d "$C1_SECS" "${mcp[@]}"
    grow "$t-c1-fwd.$r" "  c=1 100% forwarded ($t)" -c 1 -d "$C1_SECS" "${mcp[@]}" --forwarded
    if [ -n "$ONE_CORE" ]; then
      pin "$ONE_CORE"
      grow "$t-c1p-local.$r" "  c=1 all-local, one core ($t)" -c 1 -d "$C1_SECS" "${mcp[@]}"
      grow "$t-c1p-fwd.$r" "  c=1 100% forwarded, one core ($t)" -c 1 -d "$C1_SECS" "${mcp[@]}" --forwarded
      pin "$ALL_CORES"
    fi
  }
  # pin CPUS: every thread of the run's processes (upstream, Redis, the
  # fleet) and the load generators started after it on CPUS.
  PIN=()
  pin() {
    local p
    for p in "$UP" ${RPID:-} "$SUP" $(pgrep -P "$SUP"); do
      taskset -a -p -c "$1" "$p" >/dev/null
    done
    if [ "$1" = "$ALL_CORES" ]; then PIN=(); else PIN=(taskset -c "$1"); fi
  }
  ALL_CORES=$(taskset -cp $$ 2>/dev/null | awk '{print $NF}' || true)
  ONE_CORE=
  if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ] && [ -n "$ALL_CORES" ]; then
    ONE_CORE=$(python3 -c 'import os;print(min(os.sched_getaffinity(0)))')
  fi

  echo "## gateway: tools/call (echo), WORKERS=2, $SOCKET, $THREADS"
  echo "## ${SECS}s per row (c=1 rows: ${C1_SECS}s), $ROUNDS rounds (#r); fwd = requests sent to a worker other than the session's owner"
  echo
  echo "| path                                   |   c |     req/s | p50 µs |  p99 µs | errs |  fwd | spread      |"
  echo "|----------------------------------------|-----|-----------|--------|---------|------|------|-------------|"

  # One host: sessions forwarded over Unix sockets (no Redis). The direct row
  # runs while this fleet idles, so that each round's ratios are measured
  # within a minute of each other.
  start_fleet gw-unix "${FLEET_ENV[@]}" DATABASE_URL="sqlite:$WORK/bench-unix.db"
  register unix
  sleep 1 # every worker polls the registry (REGISTRY_POLL_INTERVAL)
  FLEET_SUP=$SUP
  for r in $(seq 1 "$ROUNDS"); do
    SUP=
    grow "direct.$r" "direct upstream (session) #$r" --url "$UP_URL" -c "$CONNS" -d "$SECS" --post "$CALL" --mcp-session "${HDR[@]}"
    SUP=$FLEET_SUP
    grow "rpc.$r" "/rpc #$r" --url "http://$ADDR/rpc" -c "$CONNS" -d "$SECS" --post "$RPC_CALL" -H "$AUTH"
    affinity_rows unix "$r"
    SUP=
    grow "direct26.$r" "direct upstream (2026-07-28) #$r" --url "$UP_URL" -c "$CONNS" -d "$SECS" --post "$CALL26" "${HDR26[@]}"
    SUP=$FLEET_SUP
    grow "modern.$r" "/servers/{id}/mcp 2026-07-28 #$r" --url "http://$ADDR/servers/$SID/mcp" -c "$CONNS" -d "$SECS" --post "$CALL26" "${HDR26[@]}" -H "$AUTH"
  done
  RSS_LINES=$(for w in $(pgrep -P "$SUP"); do echo "worker $w RSS after load: $(rss_kb "$w") kB"; done)
  stop_fleet

  TRANSPORTS=(unix)
  if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
    RPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$WORK/redis.log" 2>&1 &
    RPID=$!; PIDS+=("$RPID")
    for _ in $(seq 1 500); do
      [ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" = PONG ] && break
      kill -0 "$RPID" 2>/dev/null || { cat "$WORK/redis.log" >&2; die "redis-server exited"; }
      sleep 0.01
    done
    [ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" = PONG ] || die "redis-server on port $RPORT does not answer"
    SECRET=$(python3 -c 'import secrets;print(secrets.token_hex(32))')
    for t in pubsub http; do
      redis-cli -p "$RPORT" flushall >/dev/null
      start_fleet "gw-$t" "${FLEET_ENV[@]}" DATABASE_URL="sqlite:$WORK/bench-$t.db" \
        REDIS_URL="redis://127.0.0.1:$RPORT" FLEET_SECRET="$SECRET" AFFINITY_FORWARD="$t"
      register "$t"
      sleep 1
      for r in $(seq 1 "$ROUNDS"); do affinity_rows "$t" "$r"; done
      stop_fleet
      TRANSPORTS+=("$t")
    done
  else
    echo
    echo "redis-server (or redis-cli) is not installed: the Redis rows (pubsub, http) are skipped"
  fi
  echo

  echo "## gateway summary"
  echo
  # What one hand-off between two processes costs on this machine: most of a
  # c=1 row's latency is such hand-offs (client -> worker -> upstream and
  # back; a forward adds two, a pub/sub forward four, through Redis).
  python3 - <<'PY'
import os, socket, time
def rtt(parent_cpu, child_cpu):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        a.close()
        os.sched_setaffinity(0, {child_cpu})
        while (d := b.recv(64)):
            b.send(d)
        os._exit(0)
    b.close()
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {parent_cpu})
    ts = []
    for _ in range(5000):
        t = time.perf_counter_ns(); a.send(b"x"); a.recv(64); ts.append(time.perf_counter_ns() - t)
    a.close(); os.waitpid(pid, 0)
    os.sched_setaffinity(0, mine)
    ts.sort()
    return ts[len(ts) // 2] / 1000
cpus = sorted(os.sched_getaffinity(0))
line = f"process ping-pong round trip (two hand-offs), p50: one core {rtt(cpus[0], cpus[0]):.0f} µs"
if len(cpus) > 1:
    line += f", across two cores {rtt(cpus[0], cpus[1]):.0f} µs"
print(line)
PY
  python3 - "$RES" "$(getconf CLK_TCK)" "$ROUNDS" "${TRANSPORTS[@]}" <<'PY'
import json, os, statistics, sys
res, hz, rounds, transports = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def load(k, ext="json"):
    with open(os.path.join(res, f"{k}.{ext}")) as f:
        return json.load(f)
def each(metric):
    """metric(r) over the rounds: (the median, the range as text)."""
    vals = [metric(r) for r in range(1, rounds + 1)]
    med = statistics.median(vals)
    return med, f"[{min(vals):.0f}..{max(vals):.0f}]" if rounds > 1 else ""
for label, key, direct in (("/rpc", "rpc", "direct"), ("/servers/{id}/mcp", "unix-local", "direct"),
                           ("2026-07-28", "modern", "direct26")):
    def ratio(r):
        d = load(f"{direct}.{r}")["rps"]
        return 100 * load(f"{key}.{r}")["rps"] / d if d else 0
    def cpu_us(r):
        return load(f"{key}.{r}", "cpu") / hz * 1e6 / max(load(f"{key}.{r}")["requests"], 1)
    (rt, rr), (cu, _) = each(ratio), each(cpu_us)
    print(f"{label + ':':<19} {rt:3.0f}% of direct throughput {rr} ({'ok' if rt >= 40 else 'MISSED'}: >= 40); "
          f"gateway CPU {cu:.0f} µs/request")
for t in transports:
    one_core = os.path.exists(os.path.join(res, f"{t}-c1p-fwd.1.json"))
    def add_on(kind):
        return lambda r: load(f"{t}-{kind}-fwd.{r}")["p50_us"] - load(f"{t}-{kind}-local.{r}")["p50_us"]
    def share_of(kind):
        return lambda r: 100 * load(f"{t}-{kind}.{r}")["rps"] / max(load(f"{t}-local.{r}")["rps"], 1)
    (a, ar), (pf, pfr), (ps, psr) = each(add_on("c1p" if one_core else "c1")), each(share_of("fwd")), each(share_of("spread"))
    placed = ""
    if one_core:
        pa, par = each(add_on("c1"))
        placed = f", {pa:+.0f} µs {par} as placed by the scheduler"
    spr = load(f"{t}-spread.1")
    share = 100 * spr["forwarded_requests"] / max(spr["requests"], 1)
    sessions = f"{spr['forwarded_clients']}/{spr['connections']} sessions"
    where = "on one core" if one_core else "(scheduler-placed)"
    print(f"forwarding, {t + ':':<7} {a:+5.0f} µs p50 at c=1 {where} {ar} ({'ok' if a < 150 else 'MISSED'}: < 150{placed}); "
          f"100% forwarded: {pf:3.0f}% of all-local {pfr}; "
          f"spread: {ps:3.0f}% of all-local {psr} ({'ok' if ps >= 70 else 'MISSED'}: >= 70; "
          f"{sessions}, {share:.0f}% of requests forwarded in round 1)")
print(f"(median over {rounds} rounds, [min..max] beside it)" if rounds > 1 else "")
for name in sorted(os.listdir(res)):
    if name.endswith(".json"):
        r = load(name[:-5])
        if r["errors"] or not r["requests"]:
            print(f"WARNING {name[:-5]}: {r['requests']} requests, {r['errors']} errors"
                  f" (first: {r['first_error']})")
PY
  echo
  echo "$RSS_LINES"
  echo "gateway section: $(( $(date +%s) - GW_T0 )) s"
fi
