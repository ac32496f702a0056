//! GET /openapi.json: the API described in OpenAPI 3.1, derived from the handlers'
//! `#[utoipa::path]` attributes and the types they send and take (`ToSchema`,
//! `IntoParams`). tests/it/openapi.rs keeps it complete: every documented operation must
//! exist and every route in `super::ROUTES` must be documented; `make schemathesis`
//! checks that the server does what it says.

use super::params::NoQuery;
use super::responses::{self, BadRequest};
use super::{
    bulk, dashboard, dead, error, health, legacy, live, schedules, webhooks, workers, works,
    AppState,
};
use crate::amqp::dead as amqp_dead;
use crate::model;
use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, PathItem, Ref, RefOr, Schema};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "ppctl", description = "The ppctl work pipeline's HTTP API (`ppctl serve`). \
        A work is \"add together the numbers 1..=add_up_to\". Times are Unix seconds. Every \
        error has the body `{\"error\": \"...\"}`: an unknown route is a 404; a method a path \
        does not document (HEAD included) is a 405 with an `Allow` header; a query parameter \
        a route does not document is a 400. Any request may get a 503 with `Retry-After` \
        when the database does not answer within 4 s."),
    paths(
        dashboard::page, dashboard::favicon, dashboard::get_stats, dashboard::stream,
        works::create, works::search, works::get, works::events, works::retry, works::cancel,
        bulk::retry_all, bulk::cancel_all,
        legacy::create, legacy::get, legacy::search,
        document, health::health, health::metrics,
        dead::list, dead::replay,
        workers::list, workers::status, workers::pause, workers::resume,
        schedules::add, schedules::list, schedules::remove,
        webhooks::list, webhooks::redeliver, webhooks::redeliver_failed,
    ),
    components(
        schemas(error::ErrorBody, model::WorkStatus, model::Work, model::Event,
            crate::demand::CreateWork, crate::storage::bulk::BulkOutcome, dashboard::Stats, health::Health, live::StreamEvent,
            dead::ReplayRequest, amqp_dead::Listing, amqp_dead::DeadLetter,
            amqp_dead::Unreadable, amqp_dead::Replayed,
            crate::storage::workers::Worker, crate::storage::workers::Held,
            crate::storage::pipeline::PipelineState,
            schedules::NewSchedule, crate::storage::schedules::Schedule,
            crate::webhook::Delivery, crate::webhook::DeliveryState, webhooks::Redelivered),
        responses(responses::BadRequest, responses::Unauthorized, responses::NotFound,
            responses::MethodNotAllowed, responses::RequestTimeout, responses::Conflict,
            responses::Unprocessable,
            responses::PayloadTooLarge, responses::Unavailable, responses::CrossSite,
            responses::UnsupportedMediaType),
    ),
    tags(
        (name = "works"),
        (name = "legacy", description = "The original project's routes, kept for its clients."),
        (name = "dashboard"),
        (name = "operations"),
        (name = "dead-letters", description = "`ppctl dead list|replay` over HTTP."),
        (name = "schedules", description = "`ppctl schedule add|list|remove` over HTTP."),
        (name = "webhooks", description = "The webhook outbox: `ppctl webhook list|redeliver` over HTTP."),
    ),
)]
struct ApiDoc;

/// The document as this server behaves: with an API token, the POST routes require it
/// (and may answer 401); without one they do not, and the document says neither.
pub fn document_for(api_token: bool) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = crate::VERSION.to_string();
    let components = doc.components.get_or_insert_with(Default::default);
    let bearer = HttpAuthScheme::Bearer;
    components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(bearer)));
    for item in doc.paths.paths.values_mut() {
        body_not_null(item);
        time_patterns(item);
        super::consistency::document(item);
        if !api_token {
            without_auth(item);
        }
        if let Some(post) = item.post.as_mut() {
            // `cross_site::refuse` answers these before any handler runs.
            let refusals = &mut post.responses.responses;
            refusals.insert(
                "403".into(),
                RefOr::Ref(Ref::from_response_name("CrossSite")),
            );
            let media = Ref::from_response_name("UnsupportedMediaType");
            refusals.insert("415".into(), RefOr::Ref(media));
        }
        if let Some(delete) = item.delete.as_mut() {
            let refusal = RefOr::Ref(Ref::from_response_name("CrossSite"));
            delete.responses.responses.insert("403".into(), refusal);
        }
    }
    doc
}

/// `Option<T>` is how utoipa marks a request body optional, but it also documents a
/// `null` body, which the server refuses (a body must be an object): keep only `T`.
fn body_not_null(item: &mut PathItem) {
    let bodies = [&mut item.post, &mut item.put].into_iter().flatten();
    for body in bodies.filter_map(|op| op.request_body.as_mut()) {
        for content in body.content.values_mut() {
            let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
                continue;
            };
            let inner = one_of.items.iter().find(|s| matches!(s, RefOr::Ref(_)));
            content.schema = inner.cloned();
        }
    }
}

/// `since` and `until` carry the grammar `query::time` parses, built from its units.
fn time_patterns(item: &mut PathItem) {
    // The searches (GET) and the bulk actions (POST) that take the search's filters.
    let params = item
        .get
        .iter_mut()
        .chain(item.post.iter_mut())
        .flat_map(|op| op.parameters.iter_mut().flatten());
    for param in params.filter(|p| p.name == "since" || p.name == "until") {
        if let Some(RefOr::T(Schema::Object(schema))) = param.schema.as_mut() {
            schema.pattern = Some(crate::query::time::pattern());
        }
    }
}

fn without_auth(item: &mut PathItem) {
    let operations = [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
    ];
    for operation in operations.into_iter().flatten() {
        operation.security = None;
        operation.responses.responses.remove("401");
    }
}

/// The document served by `GET /openapi.json`, as JSON.
pub fn render(api_token: bool) -> String {
    document_for(api_token)
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the document: {e}\"}}"))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(works::resource("/openapi.json", "GET").get(document));
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "getOpenApi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this server.",
            content_type = "application/json", body = Object),
        (status = 400, response = BadRequest),
    ))]
async fn document(state: web::Data<AppState>, _: web::Query<NoQuery>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.openapi.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_and_follows_the_token() {
        let doc: serde_json::Value = serde_json::from_str(&render(true)).expect("valid JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        assert_eq!(doc["info"]["version"], crate::VERSION);
        let create = &doc["paths"]["/works"]["post"];
        assert!(create["responses"]["401"].is_object() && create["security"].is_array());
        let body = &create["requestBody"];
        assert!(body["required"].is_null(), "optional: {body}");
        let schema = &body["content"]["application/json"]["schema"];
        assert_eq!(
            schema["$ref"], "#/components/schemas/CreateWork",
            "not nullable"
        );
        let open: serde_json::Value = serde_json::from_str(&render(false)).expect("JSON");
        let create = &open["paths"]["/works"]["post"];
        assert!(create["responses"]["401"].is_null() && create["security"].is_null());
    }

    #[test]
    fn time_parameters_carry_the_grammar_the_server_parses() {
        let doc: serde_json::Value = serde_json::from_str(&render(false)).expect("JSON");
        for (path, method) in [
            ("/works", "get"),
            ("/work/search", "get"),
            ("/works/retry", "post"),
            ("/works/cancel", "post"),
        ] {
            let params = doc["paths"][path][method]["parameters"]
                .as_array()
                .expect("params");
            for name in ["since", "until"] {
                let param = params.iter().find(|p| p["name"] == name).expect(name);
                assert_eq!(param["schema"]["pattern"], crate::query::time::pattern());
            }
        }
    }
}
