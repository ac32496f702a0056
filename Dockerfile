# syntax=docker/dockerfile:1
# One image for every Compose service: `ppctl <subcommand>`.

FROM rust:1-bookworm AS builder
WORKDIR /app

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
# (docker build --build-arg PPCTL_GIT_REV=$(git rev-parse --short=12 HEAD) .).
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

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin ppctl
COPY --from=builder /app/target/release/ppctl /usr/local/bin/ppctl
USER ppctl
ENV PP_HTTP_ADDR=0.0.0.0:3000 \
    RUST_LOG=info
EXPOSE 3000
ENTRYPOINT ["ppctl"]
CMD ["serve"]
