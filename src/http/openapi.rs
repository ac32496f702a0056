//! GET /openapi.json. Placeholder.

use actix_web::web;

pub fn routes(_cfg: &mut web::ServiceConfig) {}
