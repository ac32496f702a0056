#!/usr/bin/env bash
# The `certs` service of docker-compose.tls.yml: a private CA and one certificate per
# server, made once into the volume mounted at /certs, in the postgres image (it has
# openssl, and its postgres user is the one that must own the server's key).
#
#   ca.pem                   the CA, what ppctl trusts (sslrootcert=, cacertfile=)
#   postgres.pem, .key       names postgres, localhost, 127.0.0.1; key postgres-owned, 0600
#   rabbitmq.pem, .key       names rabbitmq, localhost, 127.0.0.1; key root's, 0600 (the
#                            rabbitmq service copies it for its own user when it starts)
#
# When ca.pem is there (a later `up`, or an operator's own files mounted instead), nothing
# is made: the other files must be there too. ca.pem is written last, so an interrupted
# run is redone from the start next time. The CA's key is not kept: nothing signs later;
# to renew, remove the volume (`down -v`) and `up` again.
set -euo pipefail

dir=${CERTS_DIR:-/certs}
days=${PP_TLS_DAYS:-825}
servers=(postgres rabbitmq)

log() { echo "certs: $*" >&2; }

if [[ -e $dir/ca.pem ]]; then
    for f in "${servers[@]/%/.pem}" "${servers[@]/%/.key}"; do
        [[ -r $dir/$f ]] || {
            log "$dir has ca.pem but no readable $f: mount all of ca.pem ${servers[*]/%/.pem} ${servers[*]/%/.key}"
            exit 1
        }
    done
    log "using the certificates already in $dir"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ECDSA P-256: a key in milliseconds, and every client here (rustls, libpq, Erlang) takes it.
newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)

openssl req -x509 "${newkey[@]}" -days 3650 -subj "/CN=ppctl Compose CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null

for name in "${servers[@]}"; do
    openssl req -new "${newkey[@]}" -subj "/CN=$name" \
        -keyout "$work/$name.key" -out "$work/$name.csr" 2>/dev/null
    # rustls checks the names in subjectAltName only (never the CN) and refuses a CA
    # certificate as a server's.
    cat >"$work/$name.ext" <<EXT
subjectAltName = DNS:$name, DNS:localhost, IP:127.0.0.1
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
EXT
    openssl x509 -req -in "$work/$name.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
        -days "$days" -extfile "$work/$name.ext" -out "$work/$name.pem" 2>/dev/null
done

chmod 0755 "$dir"
install -m 0644 "$work/postgres.pem" "$work/rabbitmq.pem" "$dir/"
# PostgreSQL refuses a key that others can read or that another user owns.
install -m 0600 -o postgres -g postgres "$work/postgres.key" "$dir/"
install -m 0600 "$work/rabbitmq.key" "$dir/"
install -m 0644 "$work/ca.pem" "$dir/"
log "made a CA and certificates for ${servers[*]} in $dir (valid $days days)"
