#!/usr/bin/env bash
# `make schemathesis`: Schemathesis 4 against a live `ppctl serve`, driven only by the
# server's own /openapi.json. Every check, every phase (examples, coverage, fuzzing,
# stateful), 100 examples per operation; exits non-zero on any failure.
#
# The server is this script's own: a fresh database, a free port, an API token (so the
# auth checks see the token enforced), the local RabbitMQ with a queue of its own
# (`pp_schemathesis`, reused by every run so runs leave no queues behind) and a consumer,
# which declares that queue (so /dead-letters answers 200, not 404) and does the works
# the API creates (so their statuses move while Schemathesis reads them). Everything it
# starts or creates is stopped and dropped on exit. Schemathesis lives in a venv made by
# `scripts/services.sh schemathesis`. Its reports land in target/schemathesis/.
# One Schemathesis worker: with two, a run here on Debian 12's Python 3.11.2 failed
# inside hypothesis with "SystemError: AST constructor recursion depth mismatch" (from
# ast.parse in two threads at once), which Schemathesis reports as a run error.
#
#   PP_SCHEMATHESIS_EXAMPLES  examples per operation (default 100)
#   PP_SCHEMATHESIS_ARGS      extra arguments for `schemathesis run`
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

PG=postgres://postgres:postgres@127.0.0.1:5432
AMQP=amqp://guest:guest@127.0.0.1:5672/%2f
EXAMPLES=${PP_SCHEMATHESIS_EXAMPLES:-100}
OUT=target/schemathesis
log() { echo "schemathesis: $*" >&2; }

venv=$(scripts/services.sh schemathesis)
cargo build --quiet --bin ppctl
ppctl="${CARGO_TARGET_DIR:-target}/debug/ppctl"

mkdir -p "$OUT"
suffix="$(date +%s)_$$"
db="ppctl_schemathesis_$suffix"
token="schemathesis-$suffix"
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export DATABASE_URL="$PG/$db" AMQP_URL="$AMQP" PP_QUEUE=pp_schemathesis

server="" consumer=""
cleanup() {
    local pid
    for pid in $server $consumer; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
    done
    PGPASSWORD=postgres psql -X -q -h 127.0.0.1 -U postgres -d postgres \
        -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 ||
        log "could not drop database $db"
}
trap cleanup EXIT

"$ppctl" db setup >"$OUT/db-setup.log" 2>&1
"$ppctl" consume >"$OUT/consume.log" 2>&1 &
consumer=$!
"$ppctl" serve --addr "127.0.0.1:$port" --api-token "$token" >"$OUT/serve.log" 2>&1 &
server=$!
base="http://127.0.0.1:$port"
for _ in $(seq 100); do
    "$ppctl" raw-http GET /health --addr "127.0.0.1:$port" --fail >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { tail -n 20 "$OUT/serve.log" >&2; exit 1; }
    sleep 0.1
done
# The consumer has declared the queues once the dead letters can be listed.
declared=0
for _ in $(seq 100); do
    if "$ppctl" raw-http GET /dead-letters -H "Authorization: Bearer $token" --addr "127.0.0.1:$port" \
        --fail >/dev/null 2>&1; then
        declared=1
        break
    fi
    kill -0 "$consumer" 2>/dev/null || { tail -n 20 "$OUT/consume.log" >&2; exit 1; }
    sleep 0.1
done
((declared)) || { log "GET /dead-letters never answered 200; see $OUT/consume.log"; exit 1; }
log "ppctl serve on $base (database $db, token set); $EXAMPLES examples per operation"

# Where Schemathesis must expect more than its defaults (read it for why).
config="$PWD/scripts/schemathesis.toml"
started=$SECONDS
status=0
# A fixed, valid Consistency-Token on every request: Schemathesis 4.32's coverage phase
# sent `0` as a schema-valid value of that header although its pattern is
# `^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$` (and an example is given), and called the 400
# a failure. The header's own refusals are tested in tests/it/read_your_writes.rs.
# From inside $OUT, so Schemathesis' own cache (.schemathesis/) stays out of the tree.
# shellcheck disable=SC2086 # PP_SCHEMATHESIS_ARGS is a list of words on purpose
(cd "$OUT" && "$venv/bin/schemathesis" --config-file "$config" \
    run "$base/openapi.json" \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$EXAMPLES" \
    --workers 1 \
    --header "Authorization: Bearer $token" \
    --header "Consistency-Token: 0/0" \
    --seed "${PP_SCHEMATHESIS_SEED:-$RANDOM}" \
    --no-color \
    --report junit --report-dir . \
    ${PP_SCHEMATHESIS_ARGS:-}) | tee "$OUT/output.txt" || status=$?
log "took $((SECONDS - started)) s; exit status $status"
# The counts and the closing summary line, e.g. "== 1469 generated, 1469 passed ==".
grep -E '^  [0-9]+ generated' "$OUT/output.txt" | tail -n 1 >&2 || true
grep -E '^=+ .* in [0-9.]+s =+$' "$OUT/output.txt" | tail -n 1 >&2 || true
exit "$status"
