//! Integration tests against real PostgreSQL and RabbitMQ. One binary (one link) for
//! the whole suite; every test makes its own database and queues.

mod actions;
mod api;
mod cli;
mod crosssite;
mod dbdown;
mod dead;
mod dead_purge;
mod demands;
mod edge;
mod exits;
mod failover;
mod faults;
mod hardening;
mod helpers;
mod lateget;
mod leaks;
mod migrations;
mod openapi;
mod otlp;
mod pipeline;
mod pipeline_ops;
mod plans;
mod rawhttp;
mod retention;
mod scale;
mod secrets;
mod sweeps;
mod talk;
mod topology;
mod totals;
mod traces;
mod traces_edges;
mod unreadable;
mod zero;
