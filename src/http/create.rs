//! Creating a work for `POST /works` and `POST /work`: once per request, under its
//! `Idempotency-Key` or else its work code, and tried once more on a new connection when
//! the database server is lost under it (`storage::retry`).

use super::{body, error::ApiError, idempotency, AppState};
use crate::model::{new_work_code, Origin, Work};
use crate::storage::idempotent::{self, Created, NewWork};
use crate::storage::retry;
use crate::telemetry::{context, spans};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use tracing::Instrument;

/// A work a create request made, or that an earlier request with its key made.
pub(super) struct Made {
    pub work: Work,
    /// Made by an earlier request: answered with `Idempotent-Replayed: true`.
    pub replayed: bool,
}

impl Made {
    /// `response` with the work, and the replay header when it was an earlier request's.
    pub(super) fn answer(self, mut response: HttpResponseBuilder) -> HttpResponse {
        if self.replayed {
            response.insert_header((idempotency::REPLAYED, "true"));
        }
        response.json(self.work)
    }
}

/// Creates the work the request asks for, once: under its `Idempotency-Key`, or under
/// the work code drawn here, so that the retry on a new connection after a lost server
/// (`retry::once_more`) finds what the first attempt may have committed.
pub(super) async fn insert(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Made, ApiError> {
    // The database must not create the work after the client was told 503.
    let deadline = super::deadline();
    state.authorize(req)?;
    let key = idempotency::key(req)?;
    let asked = body::asked(&body::read(payload).await?)?;
    let new = NewWork {
        work_code: new_work_code(Origin::Api),
        add_up_to: body::add_up_to(asked.add_up_to)?,
        run_at: asked
            .when
            .and_then(|w| w.run_at(std::time::SystemTime::now())),
        deadline: Some(deadline),
        // The request's hop: the sweeper's compute of this work joins its trace.
        trace_parent: context::of_request(req),
        key: key.map(|k| (k, idempotency::fingerprint(&asked))),
    };
    let pool = &state.pool;
    let tokens = state.reads.replica_pool().is_some();
    let ((created, token), again) = retry::once_more(pool, |client, again| {
        let mut new = new.clone();
        // Called once the connection is out: on the primary's clock as it measured it.
        new.deadline = new.deadline.map(|d| pool.database_time(d));
        Box::pin(async move {
            let created = idempotent::create(client, &new, again).await?;
            Ok((
                created,
                super::consistency::after_commit(client, tokens).await,
            ))
        })
    })
    .instrument(spans::db("INSERT"))
    .await?;
    super::consistency::keep(req, token);
    let (work, replayed) = match created {
        Created::New(work) => {
            crate::telemetry::TELEMETRY.works_created.inc();
            (work, false)
        }
        // On a second attempt it may be this request's own: not a replay.
        Created::Found(work) => (work, !again),
        Created::KeyReused => {
            return Err(ApiError::Unprocessable(format!(
                "this {} was used before for a request that asked for something else; \
                 a new request needs a new key",
                idempotency::HEADER
            )))
        }
    };
    if !replayed {
        state.notifier.work_created();
    }
    Ok(Made { work, replayed })
}
