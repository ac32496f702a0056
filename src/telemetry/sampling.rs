//! Sampling, decided before a span is built. tracing-opentelemetry builds every span it
//! is given (attributes, an OpenTelemetry context) before the SDK's sampler sees it, so
//! at 1 % the producer, consumer and API paid for the 99 % never exported (the drain ran
//! at 0.71 of tracing off in `make bench`). Here the configured sampler
//! (`OTEL_TRACES_SAMPLER`) decides first: where a trace starts, on a fresh trace id, and
//! downstream, on the parent's flag. A span is built only when sampled, and the SDK then
//! keeps every span it is given (`ParentBased(AlwaysOn)`). An unsampled hop builds
//! nothing and passes the trace on as a `traceparent` with flags 00, so the next
//! process follows the decision without building anything either.

use super::env;
use anyhow::bail;
use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceId};
use opentelemetry::Context;
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};
use std::sync::OnceLock;

static SAMPLER: OnceLock<Sampler> = OnceLock::new();

/// What a hop does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Build its span.
    Sampled,
    /// Build nothing; pass this `traceparent` (flags 00) on.
    Unsampled(String),
}

/// The sampler the variables name, checked (the SDK would fall back silently on a value
/// it does not know); installed for `root` and `child`.
pub(super) fn install_from_env() -> anyhow::Result<()> {
    let sampler = from_env()?;
    let _ = SAMPLER.set(sampler);
    Ok(())
}

fn from_env() -> anyhow::Result<Sampler> {
    let Some(name) = env("OTEL_TRACES_SAMPLER") else {
        return Ok(parent_based(Sampler::AlwaysOn));
    };
    let ratio = || {
        let arg = env("OTEL_TRACES_SAMPLER_ARG");
        match arg.as_deref().map(str::parse::<f64>) {
            Some(Ok(r)) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => bail!("OTEL_TRACES_SAMPLER={name} needs OTEL_TRACES_SAMPLER_ARG, a ratio from 0 to 1 (got {arg:?})"),
        }
    };
    Ok(match name.as_str() {
        "always_on" => Sampler::AlwaysOn,
        "always_off" => Sampler::AlwaysOff,
        "traceidratio" => Sampler::TraceIdRatioBased(ratio()?),
        "parentbased_always_on" => parent_based(Sampler::AlwaysOn),
        "parentbased_always_off" => parent_based(Sampler::AlwaysOff),
        "parentbased_traceidratio" => parent_based(Sampler::TraceIdRatioBased(ratio()?)),
        other => bail!("OTEL_TRACES_SAMPLER={other:?} is not one ppctl knows: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio"),
    })
}

fn parent_based(root: Sampler) -> Sampler {
    Sampler::ParentBased(Box::new(root))
}

/// The SDK's own sampler: every span ppctl builds was already decided on.
pub(super) fn sdk_sampler() -> Sampler {
    parent_based(Sampler::AlwaysOn)
}

fn sampled(parent: Option<&Context>, trace_id: TraceId, name: &str, kind: SpanKind) -> bool {
    let sampler = SAMPLER.get_or_init(|| parent_based(Sampler::AlwaysOn));
    let result = sampler.should_sample(parent, trace_id, name, &kind, &[], &[]);
    result.decision == SamplingDecision::RecordAndSample
}

/// A trace that starts here (a root, or a later attempt that only links to the first).
pub fn root(name: &str, kind: SpanKind) -> Decision {
    let trace_id = TraceId::from(rand::random::<u128>().max(1));
    if sampled(None, trace_id, name, kind) {
        return Decision::Sampled;
    }
    let span_id = SpanId::from(rand::random::<u64>().max(1));
    Decision::Unsampled(unsampled_traceparent(trace_id, span_id))
}

/// A span whose parent is the remote `parent`; unsampled, the parent's own context is
/// passed on.
pub fn child(parent: &Context, name: &str, kind: SpanKind) -> Decision {
    let span = parent.span();
    let sc = span.span_context();
    if sampled(Some(parent), sc.trace_id(), name, kind) {
        return Decision::Sampled;
    }
    Decision::Unsampled(unsampled_traceparent(sc.trace_id(), sc.span_id()))
}

fn unsampled_traceparent(trace_id: TraceId, span_id: SpanId) -> String {
    format!("00-{trace_id}-{span_id}-00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsampled_traceparent_is_well_formed() {
        let tp = unsampled_traceparent(TraceId::from(1u128 << 64), SpanId::from(7u64));
        assert_eq!(
            tp,
            "00-00000000000000010000000000000000-0000000000000007-00"
        );
    }
}
