//! `ppctl webhook list|redeliver|disable`: the outbox, straight from the database (no
//! API needed), and the check of `consume`'s webhook settings.

use super::{emit, table, Failure};
use crate::cli::{WebhookAction, WebhookArgs, WebhookOpts};
use crate::redact::redact_url;
use crate::storage::{self, webhooks as outbox, DbError};
use crate::webhook::endpoint::Endpoint;
use crate::webhook::send::Sender;
use crate::webhook::Delivery;
use crate::worker::webhooks::RetryPolicy;

/// The most `--all-failed` sends again in one statement; run it again for more.
const REDELIVER_AT_ONCE: i64 = 100_000;

/// `consume`'s and `up`'s webhook settings, checked at start: `None` without a URL; a
/// bad URL or secret is a usage error (exit 2) that shows neither password nor secret.
pub fn deliverer(opts: &WebhookOpts) -> anyhow::Result<Option<(Sender, RetryPolicy)>> {
    let endpoint = Endpoint::parse(opts.webhook_url.as_deref(), opts.webhook_secret.as_deref())
        .map_err(Failure::Usage)?;
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let policy = RetryPolicy {
        retry_for: opts.webhook_retry_for,
        backoff_max: opts.webhook_backoff_max,
    };
    Ok(Some((Sender::new(endpoint)?, policy)))
}

pub async fn run(args: WebhookArgs) -> anyhow::Result<()> {
    let url = &args.database_url;
    let pool = storage::pool(url, 1)?;
    let client = pool.get().await.map_err(|e| {
        Failure::Unreachable(format!(
            "cannot reach the database at {}: {e}",
            redact_url(url)
        ))
    })?;
    match args.action {
        WebhookAction::List {
            status,
            limit,
            before_id,
            json,
        } => {
            let found = outbox::list(&client, status, limit, before_id)
                .await
                .map_err(db_failure)?;
            let text = match json {
                true => serde_json::to_string_pretty(&found)? + "\n",
                false => listing(&found),
            };
            emit(text.as_bytes())
        }
        WebhookAction::Redeliver { id: Some(id), .. } => {
            let again = outbox::redeliver(&client, id).await.map_err(db_failure)?;
            let again =
                again.ok_or_else(|| Failure::NotFound(format!("delivery {id} not found")))?;
            emit(listing(&[again]).as_bytes())
        }
        WebhookAction::Redeliver { id: None, .. } => {
            let count = outbox::redeliver_failed(&client, REDELIVER_AT_ONCE)
                .await
                .map_err(db_failure)?;
            emit(format!("{count} failed deliveries due again\n").as_bytes())
        }
        WebhookAction::Disable => {
            outbox::set_recording(&client, false)
                .await
                .map_err(db_failure)?;
            emit(b"webhook deliveries are no longer recorded (pending ones are still sent)\n")
        }
    }
}

fn listing(deliveries: &[Delivery]) -> String {
    let rows = deliveries
        .iter()
        .map(|d| {
            let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            vec![
                d.id.to_string(),
                d.webhook_id.clone(),
                d.work_id.to_string(),
                d.work_status.clone(),
                d.state.as_str().to_string(),
                d.attempts.to_string(),
                dash(d.last_status.map(|s| s.to_string())),
                table::printable(&dash(d.last_error.clone())),
            ]
        })
        .collect();
    let header = [
        "ID",
        "WEBHOOK_ID",
        "WORK_ID",
        "WORK",
        "STATE",
        "ATTEMPTS",
        "LAST",
        "ERROR",
    ];
    table::table(&header, rows)
}

fn db_failure(e: DbError) -> anyhow::Error {
    match e {
        DbError::Unavailable(m) => {
            Failure::Unreachable(format!("database unavailable: {m}")).into()
        }
        other => other.into(),
    }
}
