//! Webhooks: a signed POST (Standard Webhooks) for every work that reaches done,
//! failed, expired or cancelled. The deliveries are an outbox in PostgreSQL (sql/0013,
//! a log since 0016), written by triggers in the transaction that changes the status,
//! so whichever process finishes a work, and whenever it dies, the delivery is
//! recorded; `consume --webhook-url` sends them (`worker::webhooks`), at least once,
//! with backoff.
//!
//! Here: the secret and its signatures (`sign`), the receiver's URL (`endpoint`), one
//! attempt over HTTP (`send`), and the delivery as the API and the CLI show it.

pub mod endpoint;
pub mod send;
pub mod sign;

use serde::Serialize;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not yet delivered: due, being attempted, or waiting for its next attempt.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// No 2xx within the retry period; `redeliver` sends it again.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(DeliveryState::Pending),
            "delivered" => Ok(DeliveryState::Delivered),
            "failed" => Ok(DeliveryState::Failed),
            other => Err(format!(
                "unknown delivery state {other:?}: pending, delivered or failed"
            )),
        }
    }
}

/// One webhook delivery (`GET /webhooks/deliveries`, `ppctl webhook list --json`).
/// Times are Unix seconds.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    /// The `webhook-id` header: the same on every attempt and redelivery.
    pub webhook_id: String,
    pub work_id: i64,
    /// The status the work reached, which this delivery announces.
    pub work_status: String,
    pub state: DeliveryState,
    /// Attempts so far (a redelivery keeps counting).
    pub attempts: i64,
    /// When a pending delivery is next attempted (or its running attempt's claim ends).
    pub next_attempt: Option<i64>,
    pub created_on: i64,
    /// None for a delivery that succeeded at its first attempt (not written per delivery).
    pub delivered_on: Option<i64>,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<i64>,
    /// Why the last attempt did not deliver.
    pub last_error: Option<String>,
}
