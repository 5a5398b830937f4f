//! W3C trace context across the operator's boundaries: a workflow engine
//! puts its span's `traceparent` in an annotation of the execution, the
//! execution's span becomes its child, and the execution hands its own
//! context to the Job (`TRACEPARENT` in the pod's environment), where
//! `run-action` continues the trace.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Annotation a client sets on an execution to make its span the parent of
/// the execution's (a W3C `traceparent` value).
pub const TRACEPARENT_ANNOTATION: &str = "kubernetesexecution.kubernaut.io/traceparent";
/// Environment variable carrying the execution's context into its Job.
pub const TRACEPARENT_ENV: &str = "TRACEPARENT";

/// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None`
/// for anything else (a bad value is ignored, never fatal).
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    if parts.next().is_some()
        || version != "00"
        || !hex(trace, 32)
        || !hex(span, 16)
        || !hex(flags, 2)
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & 1);
    Some(SpanContext::new(
        trace_id,
        span_id,
        flags,
        true,
        TraceState::default(),
    ))
}

/// The W3C `traceparent` of a span context (`None` when it is invalid).
pub fn format_traceparent(cx: &SpanContext) -> Option<String> {
    cx.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            cx.trace_id(),
            cx.span_id(),
            cx.trace_flags().to_u8()
        )
    })
}

/// Makes `span` (just created, not yet entered) a child of the context in
/// `traceparent`, when there is one and tracing exports spans.
pub fn adopt_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(parent) = traceparent.and_then(parse_traceparent) else {
        return;
    };
    let cx = opentelemetry::Context::new().with_remote_span_context(parent);
    if let Err(e) = span.set_parent(cx) {
        tracing::debug!(error = %e, "trace parent not applied");
    }
}

/// `span`'s own context as a `traceparent` (for its Job), when spans are
/// exported.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    format_traceparent(&span.context().span().span_context().clone())
}

/// `span`'s trace ID as hex, when spans are exported.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip_and_garbage_is_ignored() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = parse_traceparent(tp).expect("valid");
        assert!(cx.is_remote() && cx.is_sampled());
        assert_eq!(format_traceparent(&cx).as_deref(), Some(tp));
        for bad in [
            "",
            "garbage",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn without_an_exporter_spans_have_no_context_to_hand_on() {
        let span = tracing::info_span!("x");
        adopt_parent(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(traceparent_of(&span), None);
        assert_eq!(trace_id_of(&span), None);
    }
}
