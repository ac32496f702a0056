//! GET /openapi.json: the API described in OpenAPI 3.0, written by hand as a static
//! file next to this one and compiled in. tests/it/openapi.rs keeps it honest: every
//! documented operation must exist and every route in `super::ROUTES` must be documented.

use actix_web::{web, HttpResponse};

/// The document, exactly as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(super::works::resource("/openapi.json", "GET").get(document));
}

async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_json_and_openapi_3() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.0")));
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    }
}
