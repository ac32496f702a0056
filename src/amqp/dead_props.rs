//! A dead letter's properties: what the consumer adds to the copy it publishes (the
//! reason and the time, in headers), what it takes away (the original's per-message
//! TTL), and how a listing reads them back and a replay strips them again.

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;

/// Header with the consumer's reason, a short human sentence (the one it logs).
pub const REASON_HEADER: &str = "x-ppctl-reason";
/// Header with the time the consumer dead-lettered the delivery, in Unix milliseconds.
pub const DEAD_AT_HEADER: &str = "x-ppctl-dead-at";

/// Header keeping the original's per-message TTL, as RabbitMQ's `original-expiration`.
pub const ORIGINAL_EXPIRATION_HEADER: &str = "x-ppctl-original-expiration";

/// The original properties (message_id, timestamp, headers...) plus the reason and the
/// time, made persistent: a dead letter is the only copy left. Without the original's
/// `expiration`, as RabbitMQ's own dead-lettering does: a dead letter that expires is a
/// poison demand acknowledged and then lost.
pub(super) fn with_reason(props: &BasicProperties, reason: &str, now_ms: i64) -> BasicProperties {
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(
        REASON_HEADER.into(),
        AMQPValue::LongString(reason.as_bytes().into()),
    );
    headers.insert(DEAD_AT_HEADER.into(), AMQPValue::LongLongInt(now_ms));
    if let Some(ttl) = props.expiration() {
        let ttl = AMQPValue::LongString(ttl.as_str().as_bytes().into());
        headers.insert(ORIGINAL_EXPIRATION_HEADER.into(), ttl);
    }
    without_expiration(props)
        .with_headers(headers)
        .with_delivery_mode(2)
}

/// `props` with no `expiration`: lapin can set a property but not unset one, so every
/// other property is copied onto fresh ones.
fn without_expiration(props: &BasicProperties) -> BasicProperties {
    let mut out = BasicProperties::default();
    macro_rules! copy {
        ($($get:ident => $set:ident),*) => {
            $(if let Some(value) = props.$get().clone() {
                out = out.$set(value);
            })*
        };
    }
    copy!(content_type => with_content_type, content_encoding => with_content_encoding,
        headers => with_headers, delivery_mode => with_delivery_mode,
        priority => with_priority, correlation_id => with_correlation_id,
        reply_to => with_reply_to, message_id => with_message_id,
        timestamp => with_timestamp, kind => with_type, user_id => with_user_id,
        app_id => with_app_id, cluster_id => with_cluster_id);
    out
}

/// Why and when a dead letter died: the consumer's headers, or else the broker's
/// `x-death` (a delivery limit reached, a reject the consumer fell back to). The time
/// is in Unix milliseconds.
pub fn reason_of(headers: Option<&FieldTable>) -> (String, Option<i64>) {
    let Some(headers) = headers.map(FieldTable::inner) else {
        return ("unknown (no headers)".into(), None);
    };
    if let Some(AMQPValue::LongString(reason)) = headers.get(REASON_HEADER) {
        let at = match headers.get(DEAD_AT_HEADER) {
            Some(AMQPValue::LongLongInt(ms)) => Some(*ms),
            _ => None,
        };
        return (String::from_utf8_lossy(reason.as_bytes()).into_owned(), at);
    }
    // x-death: one table per (queue, reason), the most recent first.
    let first = match headers.get("x-death") {
        Some(AMQPValue::FieldArray(deaths)) => deaths.as_slice().first(),
        _ => None,
    };
    let Some(AMQPValue::FieldTable(death)) = first else {
        return ("unknown (no reason recorded)".into(), None);
    };
    let death = death.inner();
    let text = |key: &str| match death.get(key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        _ => "?".into(),
    };
    let at = match death.get("time") {
        Some(AMQPValue::Timestamp(secs)) => i64::try_from(*secs).ok().map(|s| s * 1000),
        _ => None,
    };
    let reason = format!(
        "dead-lettered by the broker: {} (from queue {})",
        text("reason"),
        text("queue")
    );
    (reason, at)
}

/// The properties a replayed message goes back with: the original ones, without the
/// dead-letter headers (ours and the broker's), so it starts afresh.
pub fn for_replay(props: &BasicProperties) -> BasicProperties {
    let Some(headers) = props.headers() else {
        return props.clone();
    };
    let kept: std::collections::BTreeMap<_, _> = headers
        .inner()
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !(name.starts_with("x-ppctl-")
                || name.starts_with("x-death")
                || name.starts_with("x-first-death")
                || name.starts_with("x-last-death")
                || name == "x-delivery-count")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    props.clone().with_headers(FieldTable::from(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_does_not_keep_the_originals_expiration() {
        let original = BasicProperties::default()
            .with_expiration("4000".into())
            .with_message_id("m-1".into())
            .with_app_id("app".into())
            .with_priority(3);
        let dead = with_reason(&original, "not JSON", 1);
        assert_eq!(dead.expiration(), &None, "the dead letter would expire");
        assert_eq!(dead.message_id().as_ref().map(|s| s.as_str()), Some("m-1"));
        assert_eq!(dead.app_id().as_ref().map(|s| s.as_str()), Some("app"));
        assert_eq!(
            (*dead.priority(), *dead.delivery_mode()),
            (Some(3), Some(2))
        );
        let headers = dead.headers().clone().unwrap_or_default();
        let kept = headers.inner().get(ORIGINAL_EXPIRATION_HEADER);
        assert_eq!(kept, Some(&AMQPValue::LongString("4000".into())));
        // Everything but the expiration survives: equal once it is put back.
        let restored = dead.clone().with_expiration("4000".into());
        let expected = original.with_headers(headers).with_delivery_mode(2);
        assert_eq!(restored, expected);
    }

    #[test]
    fn reasons_come_from_our_headers_then_from_x_death() {
        let props = with_reason(&BasicProperties::default(), "not JSON", 1_700_000_000_123);
        let (reason, at) = reason_of(props.headers().as_ref());
        assert_eq!((reason.as_str(), at), ("not JSON", Some(1_700_000_000_123)));
        let replayed = for_replay(&props);
        assert!(replayed
            .headers()
            .as_ref()
            .is_some_and(|h| h.inner().is_empty()));

        let mut death = FieldTable::default();
        death.insert(
            "reason".into(),
            AMQPValue::LongString("delivery_limit".into()),
        );
        death.insert("queue".into(), AMQPValue::LongString("q".into()));
        death.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
        let mut headers = FieldTable::default();
        let deaths = vec![AMQPValue::FieldTable(death)];
        headers.insert("x-death".into(), AMQPValue::FieldArray(deaths.into()));
        let (reason, at) = reason_of(Some(&headers));
        assert!(
            reason.contains("delivery_limit") && reason.contains("queue q"),
            "{reason}"
        );
        assert_eq!(at, Some(1_700_000_000_000));
        assert!(reason_of(None).0.starts_with("unknown"));
    }
}
