#!/usr/bin/env bash
# Builds, with podman, the local stand-ins for the base images that `make compose-test`
# cannot pull on a machine without a registry. They are test fixtures, not the product:
# docker-compose.yml and the Dockerfile default to the official images
# (postgres:16, rabbitmq:3-management, rust:1-bookworm, debian:bookworm-slim,
# jaegertracing/jaeger).
#
#   scripts/images/build.sh      build what is missing or stale; print KEY=VALUE lines
#                                naming the images, for the PP_*_IMAGE variables
#
#   localhost/ppctl-standin-debian:bookworm     debootstrap minbase, trimmed like -slim
#   localhost/ppctl-standin-rust:<version>      that + this machine's rustup toolchain + gcc
#   localhost/ppctl-standin-postgres:bookworm   Debian's PostgreSQL 15, official-image env
#   localhost/ppctl-standin-rabbitmq:bookworm   Debian's RabbitMQ 3.10 + management plugin
#   localhost/ppctl-standin-jaeger:bookworm     tests/otlp/receiver.py on :4318 (OTLP/HTTP),
#                                               its PyPI packages installed at build time
#
# The images stay in podman's store between runs (the debootstrap and the apt-get
# layers are the expensive part); podman's layer cache rebuilds only what changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { echo "images: $*" >&2; }
die() {
    echo "images: error: $*" >&2
    exit 1
}

DEBIAN_IMAGE=localhost/ppctl-standin-debian:bookworm
POSTGRES_IMAGE=localhost/ppctl-standin-postgres:bookworm
RABBITMQ_IMAGE=localhost/ppctl-standin-rabbitmq:bookworm
JAEGER_IMAGE=localhost/ppctl-standin-jaeger:bookworm
MIRROR=${PP_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# Scratch directories, removed on any exit (a failed step included).
scratch=()
trap 'rm -rf "${scratch[@]}"' EXIT

# A Debian bookworm minbase root fs, slimmed the way debian:bookworm-slim is (no docs,
# man pages or locales, now or in later installs), imported as an image.
build_debian() {
    if podman image exists "$DEBIAN_IMAGE"; then
        return
    fi
    command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/services.sh podman installs it)"
    local root
    root=$(mktemp -d /tmp/ppctl-minbase.XXXXXX)
    scratch+=("$root")
    log "debootstrap --variant=minbase bookworm (once, ~30 s)"
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$root.log" 2>&1 ||
        die "debootstrap failed; see $root.log"
    rm -f "$root.log"
    cat >"$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
    # What debuerreotype does for the official -slim images.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
DPKG
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$root/etc/apt/apt.conf.d/docker-no-recommends"
    printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/docker-no-languages"
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,locale,lintian,linda}/* \
        "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/*
    tar --numeric-owner -C "$root" -c . |
        podman import --change 'CMD ["bash"]' \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$DEBIAN_IMAGE" >/dev/null
    log "built $DEBIAN_IMAGE"
}

# rustc/cargo of this machine's default rustup toolchain (no docs, no rust-src, no
# clippy/rustfmt), laid out like the official rust image: /usr/local/cargo/bin on PATH.
build_rust() {
    local toolchain version ctx
    toolchain=$(rustc --print sysroot) || die "no rustc on this machine"
    version=$(rustc --version | awk '{print $2}')
    RUST_IMAGE=localhost/ppctl-standin-rust:$version
    ctx=$(mktemp -d /tmp/ppctl-rustctx.XXXXXX)
    scratch+=("$ctx")
    mkdir -p "$ctx/rust/bin" "$ctx/rust/lib"
    cp "$here/rust/Containerfile" "$ctx/"
    copy_extra_cas "$ctx"
    # Hard links where possible: ~600 MB that podman reads once and then caches by digest.
    cp -al "$toolchain/bin/rustc" "$toolchain/bin/cargo" "$ctx/rust/bin/" 2>/dev/null ||
        cp -a "$toolchain/bin/rustc" "$toolchain/bin/cargo" "$ctx/rust/bin/"
    cp -al "$toolchain"/lib/*.so* "$ctx/rust/lib/" 2>/dev/null || cp -a "$toolchain"/lib/*.so* "$ctx/rust/lib/"
    cp -al "$toolchain/lib/rustlib" "$ctx/rust/lib/" 2>/dev/null || cp -a "$toolchain/lib/rustlib" "$ctx/rust/lib/"
    rm -rf "$ctx/rust/lib/rustlib/src" "$ctx/rust/lib/rustlib/rustc-src"
    log "building $RUST_IMAGE (toolchain $(rustc --version))"
    podman build -q --layers --build-arg BASE_IMAGE="$DEBIAN_IMAGE" -t "$RUST_IMAGE" "$ctx" >/dev/null
}

# This machine's extra trusted CAs (a TLS-inspecting egress proxy, say) into $1/ca/, so
# that cargo and pip in an image reach crates.io and PyPI as they do on the host.
copy_extra_cas() {
    mkdir -p "$1/ca"
    find /usr/local/share/ca-certificates -name '*.crt' -exec cp {} "$1/ca/" \; 2>/dev/null || true
}

# The OTLP test receiver, from tests/otlp/, in place of Jaeger's OTLP/HTTP receiver.
build_jaeger() {
    local ctx tests=$here/../../tests/otlp
    ctx=$(mktemp -d /tmp/ppctl-jaegerctx.XXXXXX)
    scratch+=("$ctx")
    cp "$here/jaeger/Containerfile" "$tests/receiver.py" "$tests/requirements.txt" "$ctx/"
    copy_extra_cas "$ctx"
    log "building $JAEGER_IMAGE"
    podman build -q --layers --build-arg BASE_IMAGE="$DEBIAN_IMAGE" -t "$JAEGER_IMAGE" "$ctx" >/dev/null
}

build_service() {
    local name=$1 image=$2
    log "building $image"
    podman build -q --layers --build-arg BASE_IMAGE="$DEBIAN_IMAGE" -t "$image" "$here/$name" >/dev/null
}

build_debian
build_rust
build_service postgres "$POSTGRES_IMAGE"
build_service rabbitmq "$RABBITMQ_IMAGE"
build_jaeger

echo "PP_RUNTIME_IMAGE=$DEBIAN_IMAGE"
echo "PP_RUST_IMAGE=$RUST_IMAGE"
echo "PP_POSTGRES_IMAGE=$POSTGRES_IMAGE"
echo "PP_RABBITMQ_IMAGE=$RABBITMQ_IMAGE"
echo "PP_JAEGER_IMAGE=$JAEGER_IMAGE"
