//! Parameters shared by several routes, with their OpenAPI descriptions.

use utoipa::IntoParams;

/// The `{id}` of the work routes. Handlers take it as text and parse it themselves, so
/// that a non-integer is a 400 with a message naming it, as documented here.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // a description: handlers read `web::Path<String>`
pub struct WorkId {
    /// The work id; anything but an integer is a 400, an unknown one a 404.
    #[param(minimum = -9223372036854775808_i64, maximum = 9223372036854775807_i64)]
    id: i64,
}

/// The parameters of a route that takes none: any query parameter is a 400 naming it,
/// instead of being silently ignored (a typo'd filter would otherwise look applied).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

/// The `Idempotency-Key` header of the create routes (`http::idempotency` reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // a description: handlers read the header themselves
pub struct IdempotencyKey {
    /// Any 1 to 255 visible ASCII characters (a UUID will do), one per request the
    /// client means once; a Structured Field string (`"…"`) counts without its quotes.
    /// Anything else is a 400.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]{1,255}$"
    )]
    idempotency_key: Option<String>,
}
