//! Integration tests against real PostgreSQL and RabbitMQ. One binary (one link) for
//! the whole suite; every test makes its own database and queues.

mod actions;
mod amqp_tls;
mod amqp_tls_loops;
mod api;
mod cli;
mod cli_create;
mod crosssite;
mod darkhosts;
mod dbdown;
mod dead;
mod dead_purge;
mod demands;
mod deploy_doc;
mod edge;
mod exits;
mod failover;
mod faults;
mod hardening;
mod helpers;
mod idempotency;
mod lateget;
mod leaks;
mod migrations;
mod openapi;
mod ordinary_role;
mod original;
mod otlp;
mod pg_tls;
mod pg_tls_serve;
mod pipeline;
mod pipeline_ops;
mod plans;
mod private_pg;
mod rawhttp;
mod read_your_writes;
mod replica_pair;
mod replicas;
mod retention;
mod role_replication;
mod rolling;
mod scale;
mod secrets;
mod sql_lint;
mod standbys;
mod sweeps;
mod talk;
mod tls_broker;
// Shared with the chaos suite (its TLS scenario): one certificate maker, no copy.
#[path = "../support/tls_certs.rs"]
mod tls_certs;
mod tls_server;
mod topology;
mod totals;
mod traced;
mod traces;
mod traces_edges;
mod traces_settings;
mod unreadable;
mod upgrades;
#[path = "../support/webhook_receiver.rs"]
mod webhook_receiver;
mod webhooks;
mod webhooks_ops;
mod write_failover;
mod zero;
