#!/usr/bin/env bash
# The whole fleetgate test suite: installs what is missing on a fresh Debian or
# Ubuntu machine, then runs static checks, unit and integration tests.
#
#   scripts/test.sh
#
# Tests start their own redis-server and PostgreSQL on free ports and their own
# upstream MCP servers; they never touch services already running on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

log "prerequisites"
command -v cargo >/dev/null || { echo "cargo is required: https://rustup.rs" >&2; exit 1; }
command -v redis-server >/dev/null || apt_install redis-server
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
command -v npm >/dev/null || apt_install nodejs npm
command -v curl >/dev/null || apt_install curl
command -v python3 >/dev/null || apt_install python3
echo "redis-server: $(redis-server --version | cut -d' ' -f3)"
echo "postgres: $(ls -d /usr/lib/postgresql/*/bin | head -1)"
echo "node: $(node --version 2>/dev/null || echo none), npm: $(npm --version)"

log "node packages (official MCP TypeScript SDK; the conformance suite installs itself)"
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)

log "python packages (official MCP Python SDK, into tests/python/.venv)"
py_env=tests/python/.venv
# The venv keeps a copy of the requirements it was built from: rebuilt when they change.
if ! cmp -s tests/python/requirements.txt "$py_env/requirements.txt"; then
  rm -rf "$py_env"
  # Debian and Ubuntu ship venv's pip bootstrap apart, in python3-venv.
  if ! python3 -m venv "$py_env" >/dev/null 2>&1; then
    rm -rf "$py_env"
    apt_install python3-venv
    python3 -m venv "$py_env"
  fi
  "$py_env/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt
  cp tests/python/requirements.txt "$py_env/requirements.txt"
fi
echo "python: $("$py_env/bin/python" --version), mcp $("$py_env/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))')"

log "format and lints"
cargo fmt --all -- --check
cargo clippy -q --workspace --all-targets -- -D warnings

log "build (the binary under test carries the test-hooks feature)"
cargo build -q -p fleetgate --features test-hooks
export FLEETGATE_SKIP_BUILD=1

log "unit and integration tests"
cargo test -q --workspace --no-fail-fast
