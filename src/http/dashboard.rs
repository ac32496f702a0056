//! The live dashboard (GET /) and its event stream (GET /works/stream). Placeholder.

use actix_web::web;

pub fn routes(_cfg: &mut web::ServiceConfig) {}
