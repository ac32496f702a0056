//! Demands that carry no `message_id`. The original project's producer sets none, and
//! neither do pika's, amiquip's or Celery's raw publishes by default, so by default such a
//! demand is a work like any other: stored under a key ppctl makes up, computed, and
//! acknowledged after the commit.
//!
//! What that costs, said plainly: a made-up key keeps ppctl's own stores idempotent (a
//! batch stored again after a failover is still one work), but it cannot recognise the
//! broker's redelivery of the same message, and two equal bodies are two demands. So a
//! demand without an id that is redelivered after a crash between commit and ack makes a
//! second work. The broker's `redelivered` flag narrows that down: such a delivery is
//! stored with a `demand/possible-repeat` event (`storage::works::insert_finished`)
//! and counted. `--require-message-id`
//! refuses id-less demands instead (dead-lettered with the reason), for operators who
//! want "nothing done twice" enforced.

use crate::amqp::publish::new_message_id;
use crate::telemetry::TELEMETRY;
use lapin::message::Delivery;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Made-up keys start with this, so they can be told from a publisher's own ids.
pub const MADE_UP_PREFIX: &str = "ppctl:";

/// The dead-letter reason under `--require-message-id`.
pub const REQUIRED: &str =
    "missing message_id: it is the idempotency key, and --require-message-id is set";

/// How often the hint to set `message_id` is logged.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The consumer's policy for id-less demands, and its log throttle.
#[derive(Debug, Default)]
pub struct MissingIds {
    require: bool,
    warned: Mutex<Option<Instant>>,
}

/// The key an id-less delivery is stored under, and whether it may repeat a work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeUp {
    pub key: String,
    pub possible_repeat: bool,
}

impl MissingIds {
    pub fn new(require: bool) -> Self {
        Self {
            require,
            warned: Mutex::default(),
        }
    }

    /// A made-up key for a delivery that has no `message_id`, or why it is refused.
    pub fn key_for(&self, delivery: &Delivery) -> Result<MadeUp, String> {
        TELEMETRY.demands_without_id.inc();
        if self.require {
            return Err(REQUIRED.into());
        }
        let possible_repeat = delivery.redelivered;
        if possible_repeat {
            TELEMETRY.possible_repeats.inc();
        }
        self.warn_now_and_then();
        Ok(MadeUp {
            key: format!("{MADE_UP_PREFIX}{}", new_message_id()),
            possible_repeat,
        })
    }

    fn warn_now_and_then(&self) {
        // A poisoned lock only means another thread panicked mid-log: keep logging.
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *warned = Some(Instant::now());
            tracing::warn!("demands without a message_id are stored as works, but a redelivered one cannot be told from a new one and may be done twice (counted in ppctl_demands_without_message_id_total; said at most once a minute): set message_id when publishing, e.g. pika.BasicProperties(message_id=str(uuid.uuid4()), delivery_mode=2), or refuse them with --require-message-id");
        }
    }
}
