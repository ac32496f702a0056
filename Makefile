# Everyday entry points. `make test` is the only command a fresh Debian machine needs:
# scripts/services.sh installs and starts PostgreSQL and RabbitMQ first.

CARGO ?= cargo
COMPOSE ?= docker-compose
PPCTL := ./target/release/ppctl
SOAK ?= 10m

.PHONY: run test lint-sql bench bench-smoke soak chaos compose-check compose-test services build fmt clippy e2e schemathesis

## Start the services, build, migrate, then serve + consume + produce in one process.
run: services build
	$(PPCTL) up

## What CI runs (.ci/run): formatting, lints (the migrations' too), the test suite, the
## Compose file.
test: services
	scripts/services.sh chaos-tools  # pika (tests/it/dead.rs publishes non-UTF-8 ids) and libfaketime (tests/it/replicas.rs)
	scripts/services.sh otlp-tools >/dev/null  # tests/it/otlp.rs: the OTLP receiver's venv
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --features chaos -- -D warnings  # the chaos suite too
	scripts/lint-sql.sh
	$(CARGO) test -- --test-threads=4
	$(MAKE) compose-check

## Throughput and latency against this machine's own limits, what OpenTelemetry tracing
## costs, and what a streaming standby costs on a private PostgreSQL pair (several minutes).
## One phase alone: cargo bench --bench pipeline -- --only tracing (or replication)
bench: services
	scripts/services.sh bench-tools
	$(CARGO) bench --bench pipeline

## The same harness at tiny sizes, in seconds: CI runs it so the bench never rots.
bench-smoke: services
	scripts/services.sh bench-tools
	$(CARGO) bench --profile dev --bench pipeline -- --smoke

## Leak check, not in CI: serve, consume (pruning) and produce under a steady load for
## SOAK (10m by default; any duration: SOAK=1h, SOAK=90s), sampled every 10 s. Table and
## chart in bench/results/soak-latest.{md,svg}; runs shorter than 10 min write to target/.
soak: services
	scripts/services.sh bench-tools
	SOAK=$(SOAK) $(CARGO) bench --bench pipeline -- --soak

## Fault injection: private PostgreSQL and RabbitMQ instances (one node and a three-node
## cluster, and PostgreSQL primary+standby pairs; one pair and one node over TLS only)
## killed, frozen, restarted and failed over (~7 min: 18 rows in 364–371 s here). Installs python3-pika when missing.
chaos: services
	scripts/services.sh chaos-tools
	$(CARGO) test --features chaos --test chaos -- --nocapture --test-threads=1

## Schemathesis 4 (from PyPI, in a venv of its own) against a live `ppctl serve` of its
## own, driven by its /openapi.json: all checks, stateful phase included, 100 examples per
## operation; fails on any failure (~1 min). Reports in target/schemathesis/.
schemathesis: services
	scripts/schemathesis.sh

## Browser end-to-end test of the dashboard in headless Chromium (installs chromium and
## playwright-core when missing); screenshots in target/e2e/.
e2e:
	scripts/e2e.sh

## Validate docker-compose.yml, alone and with its TLS override (installs docker-compose
## on Debian when missing).
compose-check:
	@command -v $(COMPOSE) >/dev/null 2>&1 || scripts/services.sh docker-compose
	$(COMPOSE) config -q
	$(COMPOSE) -f docker-compose.yml -f docker-compose.tls.yml config -q
	@echo "compose-check: docker-compose.yml and docker-compose.tls.yml are valid"

## Build the real Dockerfile and run the real docker-compose.yml under podman, with local
## stand-ins for base images no registry can give here (installs podman on Debian);
## checks health, API, pipeline, graceful stop, restart with kept data and TLS on
## (docker-compose.tls.yml), and down -v.
compose-test:
	scripts/compose-test.sh

## The migrations in sql/ through squawk (installed on first use), under .squawk.toml:
## no lock that would stall the application. One new file: scripts/lint-sql.sh FILE.
lint-sql:
	scripts/lint-sql.sh

services:
	scripts/services.sh

build:
	$(CARGO) build --release

fmt:
	$(CARGO) fmt --all

clippy:
	$(CARGO) clippy --all-targets --features chaos -- -D warnings
