#!/usr/bin/env bash
# Browser end-to-end test of the dashboard (`make e2e`): installs what is missing
# (Debian's chromium; Node.js's playwright-core into tests/e2e), builds ppctl, starts
# `serve` and `consume` on a fresh database and queue, runs tests/e2e/dashboard.mjs in
# headless Chromium, and cleans everything up whatever happens. Screenshots and the
# processes' logs land in target/e2e/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
out=$root/target/e2e
pg_base=${E2E_PG_BASE:-postgres://postgres:postgres@127.0.0.1:5432}
amqp_url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}

log() { echo "e2e: $*" >&2; }
die() {
    log "$*"
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# --- tools ---------------------------------------------------------------------------

# apt-get update only when a package is unknown to the local lists (a fresh machine).
apt_install() {
    [[ $EUID -eq 0 ]] && have apt-get || die "missing $*: install them (Debian: apt-get install $*)"
    local pkg
    for pkg in "$@"; do
        if ! apt-cache show "$pkg" >/dev/null 2>&1; then
            log "apt-get update"
            apt-get update -qq
            break
        fi
    done
    log "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_tools() {
    have chromium || apt_install chromium
    have node && have npm || apt_install nodejs npm
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    ((major >= 20)) || die "Node.js >= 20 is needed for playwright-core (found $(node --version))"
    # Reinstall only when the pinned version is not what node_modules holds.
    if ! (cd tests/e2e && node -e '
        const want = require("./package.json").dependencies["playwright-core"];
        process.exit(require("./node_modules/playwright-core/package.json").version === want ? 0 : 1)' 2>/dev/null); then
        log "npm ci (playwright-core; no browser download: Debian's chromium is used)"
        (cd tests/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    fi
}

# --- the system under test -----------------------------------------------------------

free_port() {
    node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })'
}

suffix=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
database=ppctl_e2e_$suffix
queue=pp_e2e_$suffix
work=$(mktemp -d)
pids=()

# SIGTERM, and a second one after 2 s: ppctl's "again to force". A closed browser's event
# stream is noticed only at its next keep-alive, and a graceful stop would wait for it.
stop() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        ((i == 20)) && kill "$pid" 2>/dev/null
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    touch "$work/stop"
    # CONT first: the test pauses the consumer (SIGSTOP) for a moment.
    for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
    [[ -s $work/serve.pid ]] && stop "$(cat "$work/serve.pid")"
    wait 2>/dev/null || true
    psql -q "$pg_base/postgres" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" 2>/dev/null ||
        log "could not drop database $database"
    # The consumer declared these; a local broker can drop them (best effort: rabbitmqctl
    # has no command for exchanges, so that one goes through eval).
    if have rabbitmqctl && [[ $EUID -eq 0 ]]; then
        for q in "$queue" "$queue.dead"; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done
        rabbitmqctl -q eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"$queue.dlx\">>), false, <<\"ppctl-e2e\">>)." \
            >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    ((status == 0)) && log "passed in ${SECONDS}s" || log "FAILED (exit $status); logs in $out"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/services.sh
scripts/services.sh chaos-tools # pika: the test publishes dead-letter fixtures with it
ensure_tools
log "building ppctl (debug)"
cargo build --quiet --bin ppctl
ppctl=${CARGO_TARGET_DIR:-$root/target}/debug/ppctl
mkdir -p "$out"
rm -f "$out"/*.png "$out"/*.log

export DATABASE_URL=$pg_base/$database AMQP_URL=$amqp_url PP_QUEUE=$queue RUST_LOG=info,lapin=warn
"$ppctl" db setup >"$out/db-setup.log"
port=$(free_port)
token=e2e-$suffix

# serve runs in a loop so the test can restart it (SIGTERM) and watch the page reconnect.
(
    while [[ ! -e $work/stop ]]; do
        # Tracing on, towards no collector (the spans are dropped and counted), so works
        # carry a trace id the detail links through PP_TRACE_URL.
        OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9 PP_TRACE_URL='http://traces.example/trace/{trace_id}' \
            PP_HTTP_ADDR=127.0.0.1:$port PP_API_TOKEN=$token "$ppctl" serve >>"$out/serve.log" 2>&1 &
        echo $! >"$work/serve.pid"
        wait $! || true
    done
) &
pids+=($!)
# A webhook receiver that checks each signature itself; consume announces every ending.
hook_port=$(free_port)
hook_secret=whsec_$(head -c 32 /dev/urandom | base64)
node tests/e2e/receiver.mjs "$hook_port" "$hook_secret" >"$out/receiver.log" 2>&1 &
pids+=($!)
PP_WEBHOOK_URL=http://127.0.0.1:$hook_port/hooks PP_WEBHOOK_SECRET=$hook_secret \
    "$ppctl" consume --sweep-every 1s >"$out/consume.log" 2>&1 &
pids+=($!)
consume_pid=$!

for _ in $(seq 100); do
    "$ppctl" raw-http GET /health --addr "127.0.0.1:$port" --fail >/dev/null 2>&1 && break
    sleep 0.1
done
"$ppctl" raw-http GET /health --addr "127.0.0.1:$port" --fail >/dev/null || die "serve did not come up; see $out/serve.log"
log "serve on 127.0.0.1:$port, consume on queue $queue, database $database"
# Queued works too, so the chart has bars and the prefix filter has something to hide.
"$ppctl" produce --every 0 --count 150 >"$out/produce.log" 2>&1

E2E_BASE_URL=http://127.0.0.1:$port/ E2E_TOKEN=$token E2E_SERVE_PID=$work/serve.pid E2E_OUT=$out \
    E2E_CONSUME_PID=$consume_pid E2E_DATABASE_URL=$DATABASE_URL E2E_AMQP_URL=$amqp_url E2E_QUEUE=$queue \
    E2E_HOOKS=http://127.0.0.1:$hook_port/ \
    node tests/e2e/dashboard.mjs
