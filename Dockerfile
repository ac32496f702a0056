# syntax=docker/dockerfile:1
# One image for every Compose service: `ppctl <subcommand>`.
#
# The base images are build arguments so that a machine without a registry can build
# with local stand-ins (make compose-test does: scripts/images/); everyone else gets the
# official images below.
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /app

# Cargo.toml's release profile (fat LTO, one codegen unit) makes the final link of the
# crate the slowest step of every image build, cached dependencies or not. The image
# uses thin LTO by default: most of the runtime gain for a fraction of the link time.
# `--build-arg CARGO_PROFILE_RELEASE_LTO=true` gives exactly `cargo build --release`.
ARG CARGO_PROFILE_RELEASE_LTO=thin
ENV CARGO_PROFILE_RELEASE_LTO=$CARGO_PROFILE_RELEASE_LTO

# Dependency layer: build the locked dependencies against an empty crate, so that a
# change to the sources alone does not recompile them. Cargo.toml names test and bench
# targets whose files must exist to load the manifest; empty ones do.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/it tests/chaos benches/pipeline \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > build.rs \
    && touch src/lib.rs tests/it/main.rs tests/chaos/main.rs benches/pipeline/main.rs \
    && cargo build --release --locked \
    && rm -rf src build.rs

# The crate embeds sql/ with include_str!, so the migrations must be here for the build.
# There is no .git in the build context: pass the revision for `ppctl --version`
# (docker build --build-arg PPCTL_GIT_REV=$(git rev-parse --short=12 HEAD) .; Compose
# passes $PPCTL_GIT_REV). Declared here, after the dependency layer, which it must not
# invalidate.
ARG PPCTL_GIT_REV=unknown
ENV PPCTL_GIT_REV=$PPCTL_GIT_REV
COPY build.rs ./
COPY sql ./sql
COPY src ./src
# COPY keeps the sources' mtimes, which may be older than the dummy build above;
# touching them makes cargo rebuild the crate itself.
RUN find src sql build.rs -type f -exec touch {} + \
    && cargo build --release --locked \
    && strip target/release/ppctl

FROM ${RUNTIME_IMAGE}
# The binary needs nothing from apt: only its own unprivileged user. TLS (amqps://,
# https://) is rustls; without ca-certificates here, an amqps:// URL without cacertfile=
# trusts Mozilla's roots (webpki-roots), which cover Amazon MQ and CloudAMQP. Install
# ca-certificates (or mount a CA file) to trust anything else.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin ppctl
COPY --from=builder /app/target/release/ppctl /usr/local/bin/ppctl
USER ppctl
# RUST_LOG is deliberately unset: the binary's default filter (info,lapin=off) applies
# unless the environment sets one.
ENV PP_HTTP_ADDR=0.0.0.0:3000
EXPOSE 3000
# Every long-running subcommand stops gracefully on SIGTERM: it stops taking work,
# commits and acknowledges what is in flight, and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["ppctl"]
CMD ["serve"]
