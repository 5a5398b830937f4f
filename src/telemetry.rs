//! Logging and tracing setup: `tracing` with JSON logs in a cluster (human
//! logs on a terminal), and — when an OTLP endpoint is configured — span
//! export over OTLP/HTTP(S). Each execution is one span (`execution`, with
//! its key, UID and trace ID; a child of the workflow engine's span when the
//! execution carries a `traceparent` annotation) whose children are its
//! phase transitions; its Job's `run-action` continues the trace.
//!
//! The standard OpenTelemetry environment is honoured:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended);
//! `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` / `OTEL_EXPORTER_OTLP_CERTIFICATE`
//! (a PEM CA for https collectors; the system roots otherwise);
//! `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` (the service name
//! defaults to the binary's role only when neither names one).

use std::path::PathBuf;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the exporter alive; flushes spans on [`Telemetry::shutdown`].
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops span export.
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "failed to flush traces");
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Where spans go: the traces endpoint as the spec defines it (the
/// signal-specific variable as is; the generic one, or `--otlp-endpoint`,
/// with `/v1/traces` appended).
pub fn traces_endpoint(endpoint: Option<&str>) -> Option<String> {
    env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| {
        endpoint
            .filter(|e| !e.trim().is_empty())
            .map(|e| format!("{}/v1/traces", e.trim_end_matches('/')))
    })
}

/// Whether the environment names the service (then it is not overwritten).
fn service_named_by_env() -> bool {
    env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attrs| {
            attrs
                .split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        })
}

/// The HTTP client of the exporter: rustls (ring), the system roots plus
/// the CA in `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`. Built on its own
/// thread (a blocking client must not be made inside the async runtime).
fn http_client() -> anyhow::Result<reqwest::blocking::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
        .or_else(|| env("OTEL_EXPORTER_OTLP_CERTIFICATE"))
        .map(PathBuf::from);
    std::thread::spawn(move || -> anyhow::Result<reqwest::blocking::Client> {
        let mut builder = reqwest::blocking::Client::builder();
        if let Some(path) = ca {
            let pem = std::fs::read(&path)
                .with_context(|| format!("read OTLP CA certificate {}", path.display()))?;
            builder =
                builder
                    .add_root_certificate(reqwest::Certificate::from_pem(&pem).with_context(
                        || format!("parse OTLP CA certificate {}", path.display()),
                    )?);
        }
        Ok(builder.build()?)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("building the OTLP HTTP client panicked"))?
}

/// Installs the global subscriber. `format`: `json`, `text` or `auto`;
/// `service`: the service name unless the environment gives one.
pub fn init(format: &str, endpoint: Option<&str>, service: &str) -> anyhow::Result<Telemetry> {
    use std::io::IsTerminal;
    use tracing_subscriber::Registry;
    // Per-layer filters: RUST_LOG decides what is logged and exported, but
    // the actors crate's spans are always recorded — an execution's span
    // carries the User-Agent its API requests are stamped with.
    let filter = || {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new("info,kube=warn,tower=warn,hyper=warn,opentelemetry=warn,reqwest=warn")
        })
    };
    let json = match format {
        "json" => true,
        "text" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.boxed()
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        vec![fmt.with_filter(filter()).boxed()];
    layers.push(
        tracing_subscriber::layer::Identity::new()
            .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                m.is_span() && m.target().starts_with("kubernetes_executor_actors")
            }))
            .boxed(),
    );
    let provider = match traces_endpoint(endpoint) {
        Some(url) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(http_client()?)
                .with_endpoint(url)
                .build()?;
            let resource = if service_named_by_env() {
                opentelemetry_sdk::Resource::builder().build()
            } else {
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(service.to_string())
                    .build()
            };
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource)
                .build();
            let tracer = provider.tracer("kubernetes-executor");
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(filter())
                    .boxed(),
            );
            Some(provider)
        }
        None => None,
    };
    tracing_subscriber::registry().with(layers).try_init()?;
    Ok(Telemetry { provider })
}

/// The environment a Job needs to export its spans where the operator's go
/// (the traces endpoint and the resource attributes; its service name is
/// `kubernetes-executor-action`). A CA file of the operator's is not passed on (it is
/// not in the Job's filesystem): https collectors need a publicly trusted
/// certificate for Jobs' spans.
pub fn job_env(endpoint: Option<&str>) -> Vec<(String, String)> {
    let Some(url) = traces_endpoint(endpoint) else {
        return Vec::new();
    };
    let mut out = vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT".to_string(), url)];
    if let Some(v) = env("OTEL_RESOURCE_ATTRIBUTES") {
        out.push(("OTEL_RESOURCE_ATTRIBUTES".to_string(), v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generic_endpoint_gets_the_traces_path() {
        // (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is unset in unit tests.)
        assert_eq!(
            traces_endpoint(Some("http://collector:4318/")).as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(traces_endpoint(Some("")), None);
        assert_eq!(traces_endpoint(None), None);
    }
}
