//! The error responses the OpenAPI document shares between operations (each a
//! `components/responses` entry that operations reference).
//!
//! They mirror `ApiError`'s statuses and headers: a header `ApiError::error_response`
//! sets is listed here too, so a client (or Schemathesis) can rely on it.

use super::error::ErrorBody;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::{ToResponse, ToSchema};

/// A JSON error response with the given description and headers.
fn error(description: &str, headers: &[(&str, &str, Type)]) -> RefOr<Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    for (name, about, ty) in headers {
        let header = HeaderBuilder::new()
            .schema(utoipa::openapi::ObjectBuilder::new().schema_type(ty.clone()))
            .description(Some(*about))
            .build();
        response = response.header(*name, header);
    }
    response.build().into()
}

macro_rules! error_response {
    ($name:ident, $description:expr $(, ($header:expr, $about:expr, $ty:expr))*) => {
        #[doc = $description]
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), error($description, &[$(($header, $about, $ty)),*]))
            }
        }
    };
}

error_response!(
    BadRequest,
    "Bad input: malformed JSON, wrong types, out-of-range numbers, unknown fields, \
     unknown query parameters, a non-integer id."
);
error_response!(
    Unauthorized,
    "The server has an API token and the request did not send it as \
     `Authorization: Bearer <token>`.",
    ("WWW-Authenticate", "`Bearer`", Type::String)
);
error_response!(NotFound, "No such work.");
error_response!(
    MethodNotAllowed,
    "A method the path does not take (every path, for every method it does not \
     document, HEAD included).",
    (
        "Allow",
        "The methods the path takes, e.g. `GET, POST`.",
        Type::String
    )
);
error_response!(
    RequestTimeout,
    "The request body did not arrive within 2 s of the request head."
);
error_response!(
    Conflict,
    "The work's status does not allow the action; the message says why."
);
error_response!(
    Unprocessable,
    "The `Idempotency-Key` was used before for a request that asked for something else \
     (another `add_up_to`); nothing was created."
);
error_response!(PayloadTooLarge, "Request body over 16 KiB.");
error_response!(
    Unavailable,
    "The database is unreachable or did not answer within 4 s; try again.",
    ("Retry-After", "Seconds to wait: `1`.", Type::Integer)
);
error_response!(
    CrossSite,
    "A write sent by another web page (`Sec-Fetch-Site` other than `same-origin` or \
     `none`, or an `Origin` that is not this server), refused whatever the token."
);
error_response!(
    UnsupportedMediaType,
    "A request body whose `Content-Type` is not `application/json`."
);
