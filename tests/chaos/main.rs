//! Fault-injection suite (placeholder until written): see `make chaos`.
