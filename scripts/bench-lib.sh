# Shared by scripts/bench.sh and scripts/bench-instructions.sh (sourced, not run).

# register NAME: on the running fleet at $ADDR (its own database), the upstream
# at $UP_URL as a gateway and a virtual server of its tools, with "$AUTH"; sets
# SID. The caller waits for the workers to poll the registry.
register() {
  curl -fs -X POST "http://$ADDR/gateways" -H "$AUTH" -H 'content-type: application/json' \
    -d "{\"name\":\"up\",\"url\":\"$UP_URL\",\"transport\":\"STREAMABLEHTTP\"}" >/dev/null \
    || die "$1: registering the upstream failed"
  local tools
  tools=$(curl -fs -H "$AUTH" "http://$ADDR/tools?limit=0" \
    | python3 -c 'import json,sys;print(json.dumps([t["id"] for t in json.load(sys.stdin)]))') \
    || die "$1: listing tools failed"
  SID=$(curl -fs -X POST "http://$ADDR/servers" -H "$AUTH" -H 'content-type: application/json' \
    -d "{\"server\":{\"name\":\"bench\",\"associated_tools\":$tools}}" \
    | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])') \
    || die "$1: creating the virtual server failed"
}
