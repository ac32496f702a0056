//! The pipeline's nouns and their JSON shapes: what the API returns, what travels on
//! the queue, what the CLIs print.

use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};
use utoipa::ToSchema;

/// A unit of work: "add together the numbers 1..=add_up_to".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 21, "work_code": "api-bjq8euwsEA", "add_up_to": 4, "done": true,
    "status": "done", "result": 10, "created_on": 1634115736, "updated_on": 1634115736}))]
pub struct Work {
    pub id: i64,
    /// `api-` or `consumer-` plus 10 random alphanumerics, or `cron-<schedule>-` plus 10
    /// for a work a periodic schedule made.
    #[schema(pattern = "^(api-|consumer-|cron-[a-z0-9_-]{1,40}-)[A-Za-z0-9]{10}$")]
    pub work_code: String,
    #[schema(minimum = 0, maximum = 4294967295_u64)]
    pub add_up_to: i64,
    /// True iff status is `done`.
    pub done: bool,
    pub status: WorkStatus,
    /// 1 + 2 + ... + add_up_to; null until done.
    #[schema(required = true)]
    pub result: Option<i64>,
    /// Unix seconds.
    pub created_on: i64,
    /// Unix seconds.
    pub updated_on: i64,
    /// When a work made to run later is due (Unix seconds); absent for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<i64>,
    /// The trace of the request or demand that made the work, when its maker exported
    /// traces (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub trace_id: Option<String>,
    /// `trace_id` as a link to a trace viewer, when `PP_TRACE_URL` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_url: Option<String>,
}

impl Work {
    /// Sets the trace id (and its link) from the work's stored `traceparent`.
    pub fn with_trace(mut self, traceparent: Option<&str>) -> Self {
        self.trace_id = traceparent
            .and_then(crate::telemetry::context::trace_id_of)
            .map(str::to_string);
        self.trace_url = self
            .trace_id
            .as_deref()
            .and_then(crate::telemetry::traces::trace_url);
        self
    }
}

/// One recorded step of a work's execution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    pub id: i64,
    pub work_id: i64,
    pub work_code: String,
    /// What happened: one of `var::ALL`.
    #[schema(schema_with = var::schema)]
    pub variable: String,
    /// The sum for `compute/result`; the reason for `compute/failed` and `work/expired`;
    /// the earlier status for `work/retried` and `work/cancelled`; why, for
    /// `demand/possible-repeat`; the time it is due (RFC 3339) for `work/scheduled`; the
    /// schedule and its slot for `schedule/slot`; else null.
    #[schema(required = true)]
    pub value: Option<String>,
    /// Unix seconds.
    pub created_on: i64,
}

/// The event variables, in the order a successful work records them.
pub mod var {
    pub const CREATED: &str = "work/created";
    pub const START: &str = "compute/start";
    pub const STOP: &str = "compute/stop";
    pub const RESULT: &str = "compute/result";
    pub const FAILED: &str = "compute/failed";
    /// Still pending or running when it fell out of the sweep window (value: why).
    pub const EXPIRED: &str = "work/expired";
    /// An operator put a failed or expired work back to pending (value: its status).
    pub const RETRIED: &str = "work/retried";
    /// An operator cancelled a pending work (value: its status).
    pub const CANCELLED: &str = "work/cancelled";
    /// A queued demand with no message_id came back with the broker's `redelivered`
    /// flag: it may repeat a work stored before a crash (value: why).
    pub const POSSIBLE_REPEAT: &str = "demand/possible-repeat";
    /// Made to run later (value: when it is due, RFC 3339).
    pub const SCHEDULED: &str = "work/scheduled";
    /// Made by a periodic schedule (value: `<name> <slot, RFC 3339>`).
    pub const SLOT: &str = "schedule/slot";

    pub const ALL: [&str; 11] = [
        CREATED,
        START,
        STOP,
        RESULT,
        FAILED,
        EXPIRED,
        RETRIED,
        CANCELLED,
        POSSIBLE_REPEAT,
        SCHEDULED,
        SLOT,
    ];

    /// The OpenAPI schema of an event's `variable`: a string, one of `ALL`.
    pub fn schema() -> utoipa::openapi::Object {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .enum_values(Some(ALL))
            .build()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WorkStatus {
    Pending,
    Running,
    Done,
    Failed,
    /// Not finished within the sweep window (terminal).
    Expired,
    /// Cancelled by an operator (terminal).
    Cancelled,
    /// Waiting for its `run_at`; then claimed as a pending one is.
    Scheduled,
}

impl WorkStatus {
    pub const ALL: [WorkStatus; 7] = [
        Self::Pending,
        Self::Running,
        Self::Done,
        Self::Failed,
        Self::Expired,
        Self::Cancelled,
        Self::Scheduled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::Scheduled => "scheduled",
        }
    }
}

impl fmt::Display for WorkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status {s:?}: expected pending, running, done, failed, expired, cancelled or scheduled")
            })
    }
}

/// The AMQP message body as ppctl publishes it; `WorkDemand::parse` reads any demand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkDemand {
    pub add_up_to: i128,
    #[serde(default)]
    pub done: bool,
}

impl WorkDemand {
    /// Parses and range-checks a message body by the rules of every demand
    /// (`demand::parse`): its `add_up_to` and when to run it. The error is the
    /// dead-letter reason.
    pub fn parse(body: &[u8]) -> Result<(u64, Option<crate::run_at::When>), String> {
        match crate::demand::parse(body) {
            Ok(crate::demand::Asked {
                add_up_to: Some(n),
                when,
            }) => Ok((n, when)),
            Ok(_) => Err("bad demand: add_up_to is missing".into()),
            Err(e) => Err(format!("bad demand: {e}")),
        }
    }
}

/// Where a work came from; it decides the work code's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Api,
    Consumer,
}

/// `api-` or `consumer-` plus 10 random alphanumerics.
pub fn new_work_code(origin: Origin) -> String {
    let prefix = match origin {
        Origin::Api => "api-",
        Origin::Consumer => "consumer-",
    };
    let mut code = String::with_capacity(prefix.len() + 10);
    code.push_str(prefix);
    Alphanumeric.append_string(&mut rand::rng(), &mut code, 10);
    code
}

/// A periodic schedule's work: `cron-<name>-` plus 10 random alphanumerics (a name
/// is 1 to 40 of a-z, 0-9, - and _: `schedule::parse_name`).
pub fn schedule_work_code(name: &str) -> String {
    let mut code = format!("cron-{name}-");
    Alphanumeric.append_string(&mut rand::rng(), &mut code, 10);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_codes_have_prefix_and_ten_alphanumerics() {
        let code = new_work_code(Origin::Consumer);
        let tail = code.strip_prefix("consumer-").expect("prefix");
        assert_eq!(tail.len(), 10);
        assert!(tail.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(new_work_code(Origin::Api).starts_with("api-"));
        assert_ne!(new_work_code(Origin::Api), new_work_code(Origin::Api));
    }

    #[test]
    fn demands_parse_and_validate() {
        assert_eq!(
            WorkDemand::parse(br#"{"add_up_to": 2, "done": false}"#),
            Ok((2, None))
        );
        assert_eq!(
            WorkDemand::parse(br#"{"add_up_to": 4294967295}"#),
            Ok((4_294_967_295, None))
        );
        // The same rules as the API's: an integral 4.0 is an integer.
        assert_eq!(WorkDemand::parse(br#"{"add_up_to": 4.0}"#), Ok((4, None)));
        for bad in [
            &b"not json"[..],
            br#"{"add_up_to": "2"}"#,
            br#"{"add_up_to": 2.5}"#,
            br#"{"add_up_to": 2, "priority": 1}"#,
            br#"{"add_up_to": -1}"#,
            br#"{"add_up_to": 4294967296}"#,
            br#"{"add_up_to": 1e400}"#,
            br#"{}"#,
            br#"[1]"#,
            br#"{"add_up_to": 1, "add_up_to": 2}"#,
            br#"{"add_up_to": 1, "delay": "later"}"#,
            br#"{"add_up_to": 1, "run_at": "2026-13-01T00:00:00Z"}"#,
        ] {
            assert!(
                WorkDemand::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn statuses_round_trip() {
        for st in WorkStatus::ALL {
            assert_eq!(st.as_str().parse::<WorkStatus>(), Ok(st));
            assert_eq!(serde_json::to_string(&st).ok(), Some(format!("\"{st}\"")));
        }
        assert!("Done".parse::<WorkStatus>().is_err());
    }
}
