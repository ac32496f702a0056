#!/usr/bin/env bash
# Runs the server as the rabbitmq user with no shell wrapper left in between, so that
# the container's stop signal reaches it (Debian's /usr/sbin wrapper would keep `su`).
set -euo pipefail
if [[ ${1:-} == rabbitmq-server && $(id -u) == 0 ]]; then
    chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
    cd /var/lib/rabbitmq
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups \
        /usr/lib/rabbitmq/bin/rabbitmq-server
fi
exec "$@"
