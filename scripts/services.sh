#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and RabbitMQ (127.0.0.1:5672) are running, so
# that `make run` and `make test` work on a fresh Debian machine with no other step.
#
#   scripts/services.sh                  start (and on Debian, as root, install) both
#   scripts/services.sh docker-compose   only make sure the docker-compose command exists
#   scripts/services.sh bench-tools      only make sure wrk and pgbench exist, and the
#                                        OTLP receiver's venv (otlp-tools below: the
#                                        bench's tracing phase exports to it) (make bench)
#   scripts/services.sh chaos-tools      only make sure Python's pika exists (make chaos
#                                        publishes non-UTF-8 AMQP properties with it) and
#                                        libfaketime (make test skews a standby's clock)
#   scripts/services.sh schemathesis     only make sure Schemathesis 4 is installed (in a
#                                        venv of its own) and print the venv's path
#                                        (make schemathesis)
#   scripts/services.sh squawk           only make sure the migration linter squawk is
#                                        installed (in a venv of its own) and print its
#                                        path (make test: scripts/lint-sql.sh)
#   scripts/services.sh otlp-tools       only make sure the OTLP test receiver's packages
#                                        (tests/otlp/requirements.txt) are in a venv of
#                                        their own and print its python (make test)
#   scripts/services.sh podman           only make sure podman, docker-compose,
#                                        debootstrap, curl and jq exist and podman can
#                                        run containers here (make compose-test)
#
# When both already answer this returns in well under a second. Otherwise it installs
# what is missing (Debian/Ubuntu as root only), starts what is stopped, makes the default
# DATABASE_URL postgres://postgres:postgres@127.0.0.1:5432/personalproject work (password
# and max_connections), and waits, with a bounded wait, until both answer.
# It never creates the personalproject database: `ppctl db setup` does that.
set -euo pipefail

HOST=127.0.0.1
PG_PORT=5432
PG_PASSWORD=postgres
PG_MIN_CONNECTIONS=500 # the test suite opens many pools in parallel
# A long history (make bench: 10 million works, about 1.5 GB of indexes whose keys are
# random) must stay in PostgreSQL's own cache, or each insert reads and dirties a cold
# index page; Debian's 128 MB and 1 GB of WAL between checkpoints are sized for a small
# shared machine. Only raised, never lowered.
PG_SHARED_BUFFERS_MB=2048
PG_MAX_WAL_MB=8192
AMQP_PORT=5672
WAIT_SECS=${PP_SERVICES_WAIT:-60}
RABBIT_START_LOG=/var/log/rabbitmq/services-sh-start.log

log() { echo "services: $*" >&2; }
die() {
    echo "services: error: $*" >&2
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

# A TCP connect, without any client tool; bounded so a filtered port cannot hang us.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# Poll CHECK (a command) every 0.25 s for up to WAIT_SECS; false when it never passed.
wait_for() {
    local deadline=$((SECONDS + WAIT_SECS))
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.25
    done
}

# --- installing ------------------------------------------------------------------

# Explain what to do when this script cannot fix things itself, and fail.
cannot() {
    cat >&2 <<EOF
services: cannot $*.
  Either install and start them yourself on 127.0.0.1: PostgreSQL on port $PG_PORT with
  user postgres, password postgres and max_connections >= $PG_MIN_CONNECTIONS; RabbitMQ on
  port $AMQP_PORT with guest/guest. Or run them in containers from this repository:
    docker compose up -d postgres rabbitmq     (or: docker-compose up -d postgres rabbitmq)
EOF
    exit 1
}

# apt-get install the given packages; `apt-get update` only when apt does not know one
# of them yet (fresh image with empty lists) or when the install fails on stale lists.
apt_install() {
    if [[ $EUID -ne 0 ]] || ! have apt-get; then
        cannot "install $* here (that needs Debian/Ubuntu and root)"
    fi
    local pkg need_update=0
    for pkg in "$@"; do
        apt-cache show "$pkg" >/dev/null 2>&1 || need_update=1
    done
    export DEBIAN_FRONTEND=noninteractive
    if ((need_update)); then
        log "apt-get update"
        apt-get -o DPkg::Lock::Timeout=300 update -qq
    fi
    log "installing $* with apt-get (once)"
    if ! apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" </dev/null >&2; then
        log "apt-get install failed; refreshing package lists and retrying"
        apt-get -o DPkg::Lock::Timeout=300 update -qq
        apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" </dev/null >&2
    fi
}

# --- PostgreSQL ------------------------------------------------------------------

# Query as postgres/postgres over TCP, the way the application connects.
pg_query() {
    PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=3 psql -X -qAt -h "$HOST" -p "$PG_PORT" \
        -U postgres -d postgres -c "$1" 2>/dev/null
}

# Query as the postgres OS user over the Unix socket (peer auth), for admin work that
# must succeed before the password is set.
pg_admin() {
    (cd / && runuser -u postgres -- psql -X -qAt -p "$PG_PORT" -d postgres -c "$1")
}

pg_ready() { pg_isready -q -h "$HOST" -p "$PG_PORT" -t 2; }

# Prints "VERSION NAME PORT STATUS LOGFILE" of the cluster to use: the one on port
# 5432, else the newest; creates one when none exists.
pg_pick_cluster() {
    local clusters
    clusters=$(pg_lsclusters -h 2>/dev/null | awk '{print $1, $2, $3, $4, $NF}')
    if [[ -z $clusters ]]; then
        local ver
        ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
        [[ -n $ver ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
        log "creating PostgreSQL cluster $ver/main on port $PG_PORT"
        pg_createcluster "$ver" main --port "$PG_PORT" >&2
        clusters=$(pg_lsclusters -h | awk '{print $1, $2, $3, $4, $NF}')
    fi
    awk -v p="$PG_PORT" '$3 == p' <<<"$clusters" | head -n1 | grep . ||
        sort -V <<<"$clusters" | tail -n1
}

# Each setting capped at its target, so the answer is the targets exactly when all
# are met.
PG_SETTINGS_SQL="select least(current_setting('max_connections')::int, $PG_MIN_CONNECTIONS)
    || ' ' || least(pg_size_bytes(current_setting('shared_buffers')) / 1048576, $PG_SHARED_BUFFERS_MB)
    || ' ' || least(pg_size_bytes(current_setting('max_wal_size')) / 1048576, $PG_MAX_WAL_MB)"

pg_restart() {
    pg_ctlcluster "$1" "$2" restart >&2 || die "PostgreSQL $1/$2 did not restart; see $3"
    wait_for pg_ready || die "PostgreSQL $1/$2 did not come back on $HOST:$PG_PORT within ${WAIT_SECS}s; see $3"
}

ensure_postgres() {
    # Fast path: password works, the connection limit, cache and WAL are high enough.
    local max_conn settings
    if have psql && settings=$(pg_query "$PG_SETTINGS_SQL") &&
        [[ $settings == "$PG_MIN_CONNECTIONS $PG_SHARED_BUFFERS_MB $PG_MAX_WAL_MB" ]]; then
        return
    fi

    have pg_lsclusters && have psql || apt_install postgresql
    [[ $EUID -eq 0 ]] || cannot "start PostgreSQL on $HOST:$PG_PORT as a non-root user"
    local ver name port status logfile
    read -r ver name port status logfile < <(pg_pick_cluster)
    [[ -n ${ver:-} ]] || die "no PostgreSQL cluster found (pg_lsclusters is empty)"

    # Something other than a local cluster (a container, say) already answers on 5432:
    # use it if the default credentials work, but do not try to manage it.
    if [[ $status != online* ]] && pg_ready; then
        max_conn=$(pg_query 'show max_connections') ||
            die "a PostgreSQL not managed by pg_ctlcluster answers on $HOST:$PG_PORT but rejects postgres/postgres"
        ((max_conn >= PG_MIN_CONNECTIONS)) ||
            log "warning: max_connections is $max_conn on $HOST:$PG_PORT (not a local cluster); the test suite wants $PG_MIN_CONNECTIONS"
        return
    fi

    if [[ $port != "$PG_PORT" ]]; then
        if port_open "$HOST" "$PG_PORT"; then
            die "port $PG_PORT is taken by something other than cluster $ver/$name (port $port)"
        fi
        log "moving PostgreSQL cluster $ver/$name from port $port to $PG_PORT"
        [[ $status == down ]] || pg_ctlcluster "$ver" "$name" stop >&2
        pg_conftool -s "$ver" "$name" set port "$PG_PORT"
        status=down
    fi
    # Debian's default listen_addresses is 'localhost', which covers 127.0.0.1.
    local listen
    listen=$(pg_conftool -s "$ver" "$name" show listen_addresses 2>/dev/null || echo localhost)
    if ! [[ $listen =~ (^|[ ,\'])(localhost|127\.0\.0\.1|\*|0\.0\.0\.0)($|[ ,\']) ]]; then
        log "PostgreSQL $ver/$name listens on '$listen'; adding localhost"
        pg_conftool "$ver" "$name" set listen_addresses "localhost${listen:+,$listen}"
        [[ $status != online* ]] || pg_restart "$ver" "$name" "$logfile"
    fi
    if [[ $status != online* ]]; then
        log "starting PostgreSQL $ver/$name"
        pg_ctlcluster "$ver" "$name" start >&2 ||
            die "PostgreSQL $ver/$name failed to start; see $logfile"
    fi
    wait_for pg_ready ||
        die "PostgreSQL $ver/$name is not answering on $HOST:$PG_PORT after ${WAIT_SECS}s; see $logfile"

    if ! pg_query 'select 1' >/dev/null; then
        log "setting the password of role postgres"
        pg_admin "ALTER USER postgres PASSWORD '$PG_PASSWORD'" >/dev/null
    fi
    max_conn=$(pg_query 'show max_connections') ||
        die "cannot log in to PostgreSQL as postgres/postgres on $HOST:$PG_PORT; check pg_hba.conf of $ver/$name"
    local restart=0 buffers wal
    if ((max_conn < PG_MIN_CONNECTIONS)); then
        log "raising max_connections from $max_conn to $PG_MIN_CONNECTIONS"
        pg_query "ALTER SYSTEM SET max_connections = $PG_MIN_CONNECTIONS" >/dev/null
        restart=1
    fi
    buffers=$(pg_query "select pg_size_bytes(current_setting('shared_buffers')) / 1048576")
    if ((buffers < PG_SHARED_BUFFERS_MB)); then
        log "raising shared_buffers from ${buffers}MB to ${PG_SHARED_BUFFERS_MB}MB"
        pg_query "ALTER SYSTEM SET shared_buffers = '${PG_SHARED_BUFFERS_MB}MB'" >/dev/null
        restart=1
    fi
    wal=$(pg_query "select pg_size_bytes(current_setting('max_wal_size')) / 1048576")
    if ((wal < PG_MAX_WAL_MB)); then
        log "raising max_wal_size from ${wal}MB to ${PG_MAX_WAL_MB}MB"
        pg_query "ALTER SYSTEM SET max_wal_size = '${PG_MAX_WAL_MB}MB'" >/dev/null
        pg_query "select pg_reload_conf()" >/dev/null
    fi
    if ((restart)); then
        log "restarting PostgreSQL for the settings above"
        pg_restart "$ver" "$name" "$logfile"
    fi
}

# --- RabbitMQ --------------------------------------------------------------------

amqp_ready() { port_open "$HOST" "$AMQP_PORT"; }

# RabbitMQ 3.10's quorum queues need its rabbit_fifo_dlx_sup process. After hours of
# quorum-queue churn it can be gone for good (its restart intensity reached): the port
# answers, and every quorum queue.declare fails with noproc. A local node in that state
# has its application restarted in place (queues and messages are kept on disk).
repair_rabbitmq() {
    have rabbitmqctl && [[ $EUID -eq 0 ]] || return 0
    local alive
    alive=$(timeout 20 rabbitmqctl eval 'is_pid(whereis(rabbit_fifo_dlx_sup)).' 2>/dev/null | tail -n1) || return 0
    [[ $alive == false ]] || return 0
    log "RabbitMQ lost rabbit_fifo_dlx_sup (quorum queue.declare would fail with noproc): restarting its application"
    { timeout 60 rabbitmqctl stop_app && timeout 120 rabbitmqctl start_app; } >>"$RABBIT_START_LOG" 2>&1 ||
        die "RabbitMQ could not restart its application; see $RABBIT_START_LOG and /var/log/rabbitmq/"
    local deadline=$((SECONDS + WAIT_SECS))
    until amqp_ready; do
        ((SECONDS < deadline)) || die "RabbitMQ is not answering on $HOST:$AMQP_PORT after its restart"
        sleep 0.25
    done
}

ensure_rabbitmq() {
    amqp_ready && { repair_rabbitmq; return; }
    have rabbitmq-server || apt_install rabbitmq-server
    [[ $EUID -eq 0 ]] || cannot "start RabbitMQ on $HOST:$AMQP_PORT as a non-root user (as root: rabbitmq-server -detached)"

    # Start the node when none is running. One that is still booting is left alone,
    # and one that is still halting (`rabbitmqctl stop` returns before the VM exits)
    # is waited out and then started again.
    local deadline=$((SECONDS + WAIT_SECS)) starts=0
    until amqp_ready; do
        ((SECONDS < deadline)) ||
            die "RabbitMQ is not answering on $HOST:$AMQP_PORT after ${WAIT_SECS}s; see /var/log/rabbitmq/"
        if ! pgrep -u rabbitmq -x beam.smp >/dev/null; then
            ((starts < 2)) || die "RabbitMQ exited while starting; see /var/log/rabbitmq/ and $RABBIT_START_LOG"
            starts=$((starts + 1))
            log "starting RabbitMQ"
            # Debian's wrapper switches to the rabbitmq user, whose HOME (/var/lib/rabbitmq)
            # holds the Erlang cookie that rabbitmqctl uses too. The detached node must not
            # inherit our stdout/stderr, or a caller reading them would wait for it forever.
            (cd / && rabbitmq-server -detached) </dev/null >>"$RABBIT_START_LOG" 2>&1 ||
                die "rabbitmq-server -detached failed; see $RABBIT_START_LOG and /var/log/rabbitmq/"
        fi
        sleep 0.25
    done
}

# --- docker-compose --------------------------------------------------------------

ensure_docker_compose() {
    have docker-compose && return
    if [[ $EUID -ne 0 ]] || ! have apt-get; then
        die "docker-compose is missing; install it (Debian: apt-get install docker-compose)"
    fi
    apt_install docker-compose
}

# --- podman, for `make compose-test` ---------------------------------------------

PODMAN_CONF=/etc/containers/containers.conf.d/50-ppctl-compose-test.conf

ensure_podman() {
    local missing=() tool
    for tool in podman runc docker-compose debootstrap curl jq; do
        have "$tool" || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        if [[ $EUID -ne 0 ]] || ! have apt-get; then
            die "${missing[*]} missing; install them (Debian: apt-get install ${missing[*]})"
        fi
        apt_install "${missing[@]}"
    fi
    # In a container without systemd and with hybrid cgroups (this CI machine), podman's
    # default crun refuses to start ("cgroups in hybrid mode not supported") and runc
    # cannot set the default rlimits ("error setting rlimit type 7"): run runc, with the
    # inherited limits. A drop-in, so the machine's own containers.conf is left alone.
    if [[ ! -f $PODMAN_CONF ]]; then
        [[ $EUID -eq 0 ]] || die "podman needs $PODMAN_CONF (as root: scripts/services.sh podman)"
        log "writing $PODMAN_CONF (runc, no default ulimits)"
        mkdir -p "$(dirname "$PODMAN_CONF")"
        cat >"$PODMAN_CONF" <<'CONF'
# Written by ppctl's scripts/services.sh podman, for make compose-test.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
CONF
    fi
}

# --- load tools for `make bench` ----------------------------------------------------

ensure_bench_tools() {
    have wrk && have pgbench && return
    if [[ $EUID -ne 0 ]] || ! have apt-get; then
        die "wrk and pgbench are needed; install them (Debian: apt-get install wrk postgresql-client)"
    fi
    apt_install wrk postgresql-client
}

# --- tools for `make chaos` --------------------------------------------------------

# lapin cannot put non-UTF-8 bytes in a short string; pika can, so the suite's hostile
# publisher is a small Python script. Debian's python3-pika belongs to /usr/bin/python3
# (a pyenv or venv python3 first on PATH would not see it), so that is the one checked.
# tests/it/replicas.rs starts a standby six seconds behind under libfaketime, at this
# path (Debian's multiarch one).
FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1

ensure_chaos_tools() {
    local missing=()
    [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import pika' 2>/dev/null || missing+=(python3-pika)
    [[ -e $FAKETIME_LIB ]] || missing+=(libfaketime)
    ((${#missing[@]})) || return 0
    if [[ $EUID -ne 0 ]] || ! have apt-get; then
        die "${missing[*]} needed; install (Debian: apt-get install ${missing[*]})"
    fi
    apt_install "${missing[@]}"
}

# --- Python tools in kept venvs: Schemathesis, squawk, the OTLP test receiver ----------

# Each tool lives in a venv of its own, so the system's Python stays untouched (Debian's
# is externally managed: no pip install outside a venv). Debian splits venv's pip
# bootstrap (ensurepip) into python3-venv. A venv is kept between runs, and made again
# (from scratch) only when its check fails.
# make_venv VENV WHAT PIP-ARGS...: (re)makes VENV with `pip install PIP-ARGS`.
make_venv() {
    local venv=$1 what=$2 python=/usr/bin/python3
    shift 2
    [[ -x $python ]] || python=$(command -v python3 || true)
    if [[ -z $python ]] || ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
        if [[ $EUID -ne 0 ]] || ! have apt-get; then
            die "python3 with venv is needed; install it (Debian: apt-get install python3-venv)"
        fi
        apt_install python3 python3-venv
        python=/usr/bin/python3
    fi
    log "installing $what from PyPI into $venv (once)"
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "$@" >&2 || die "pip could not install $what into $venv"
}

# Schemathesis 4, for `make schemathesis`.
SCHEMATHESIS_VENV=${PP_SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ppctl/schemathesis}
SCHEMATHESIS_SPEC='schemathesis>=4,<5'

ensure_schemathesis() {
    local venv=$SCHEMATHESIS_VENV
    "$venv/bin/schemathesis" --version 2>/dev/null | grep -q 'version 4\.' ||
        make_venv "$venv" "$SCHEMATHESIS_SPEC" "$SCHEMATHESIS_SPEC"
    echo "$venv"
}

# squawk-cli (a prebuilt binary in a wheel), the migration linter for `make test`
# (scripts/lint-sql.sh), pinned: a newer squawk may add rules, which should come in a
# commit of their own, not fail CI.
SQUAWK_VENV=${PP_SQUAWK_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ppctl/squawk}
SQUAWK_SPEC='squawk-cli==2.70.0'

ensure_squawk() {
    local venv=$SQUAWK_VENV
    "$venv/bin/squawk" --version 2>/dev/null | grep -qx "squawk ${SQUAWK_SPEC#*==}" ||
        make_venv "$venv" "$SQUAWK_SPEC" "$SQUAWK_SPEC"
    echo "$venv/bin/squawk"
}

# tests/otlp/receiver.py decodes OTLP with opentelemetry-proto, for `make test`. The Rust
# tests look for its python at this same default path (tests/it/otlp.rs), or at
# $PP_OTLP_PYTHON. The venv records the requirements it was made from, so a changed
# tests/otlp/requirements.txt remakes it.
OTLP_VENV=${PP_OTLP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ppctl/otlp}
OTLP_REQUIREMENTS=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/otlp/requirements.txt

ensure_otlp_tools() {
    local venv=$OTLP_VENV
    local stamp=$venv/ppctl-requirements.txt
    if ! cmp -s "$OTLP_REQUIREMENTS" "$stamp" ||
        ! "$venv/bin/python" -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null; then
        make_venv "$venv" "the OTLP receiver's packages" -r "$OTLP_REQUIREMENTS"
        cp "$OTLP_REQUIREMENTS" "$stamp"
    fi
    echo "$venv/bin/python"
}

case "${1:-}" in
"") ;;
otlp-tools)
    ensure_otlp_tools
    exit 0
    ;;
schemathesis)
    ensure_schemathesis
    exit 0
    ;;
squawk)
    ensure_squawk
    exit 0
    ;;
chaos-tools)
    ensure_chaos_tools
    exit 0
    ;;
docker-compose)
    ensure_docker_compose
    exit 0
    ;;
bench-tools)
    ensure_bench_tools
    ensure_otlp_tools >/dev/null # the tracing phase's collector
    exit 0
    ;;
podman)
    ensure_podman
    exit 0
    ;;
*) die "usage: $0 [docker-compose|bench-tools|chaos-tools|otlp-tools|schemathesis|squawk|podman]" ;;
esac

ensure_postgres
ensure_rabbitmq
echo "services: postgresql $HOST:$PG_PORT up, rabbitmq $HOST:$AMQP_PORT up"
