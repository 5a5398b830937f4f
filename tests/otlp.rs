//! Trace export over OTLP/HTTP(S), decoded as a collector would:
//! - a workflow engine's trace (the `traceparent` annotation) continues
//!   through the execution's span into its Job's `run-action` span, and the
//!   operator's log lines carry the trace ID;
//! - an https collector, and the standard environment (`OTEL_SERVICE_NAME`,
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//!   `OTEL_EXPORTER_OTLP_CERTIFICATE`) is honoured.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use kube::api::{Api, PostParams};
use kubernetes_executor_crds::{KubernetesExecution, Phase};
use kubernetes_executor_testkit::eventually;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

/// Reads HTTP/1.1 requests from one connection, keeps each body, answers 200.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut conn: S, sink: Bodies) {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 8192];
        let n = match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + len {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push(buf[end + 4..end + 4 + len].to_vec());
            }
            buf.drain(..end + 4 + len);
            if conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            let _ = conn.flush().await;
        }
    }
}

/// A minimal OTLP/HTTP receiver; with `tls`, https with a certificate of a
/// fresh CA (returned).
async fn receiver(tls: Option<&std::path::Path>) -> (String, Bodies) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let bodies: Bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    let acceptor = tls.map(|dir| {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let pki = kubernetes_executor_testkit::certs::Pki::write(dir).expect("pki");
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.server_cert)
            .expect("certs")
            .map(|c| c.expect("cert"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).expect("key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let sink = sink.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(a) => {
                        if let Ok(tls) = a.accept(conn).await {
                            serve(tls, sink).await;
                        }
                    }
                    None => serve(conn, sink).await,
                }
            });
        }
    });
    (format!("{scheme}://{addr}"), bodies)
}

/// One exported span, decoded.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    resource: Vec<(String, String)>,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: Vec<(String, String)>,
}

fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.clone()) {
        Some(AnyValue::StringValue(s)) => s,
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn spans(bodies: &Bodies) -> Vec<Span> {
    let bodies = bodies.lock().map(|b| b.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for body in bodies {
        let Ok(req) = ExportTraceServiceRequest::decode(body.as_slice()) else {
            continue;
        };
        for rs in req.resource_spans {
            let resource: Vec<(String, String)> = rs
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
                .into_iter()
                .map(|kv| (kv.key, text(&kv.value)))
                .collect();
            let service = resource
                .iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push(Span {
                        service: service.clone(),
                        resource: resource.clone(),
                        name: s.name,
                        trace_id: hex::encode(&s.trace_id),
                        span_id: hex::encode(&s.span_id),
                        parent: hex::encode(&s.parent_span_id),
                        attributes: s
                            .attributes
                            .into_iter()
                            .map(|kv| (kv.key, text(&kv.value)))
                            .collect(),
                    });
                }
            }
        }
    }
    out
}

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a str> {
    s.attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

const ENGINE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ENGINE_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread")]
async fn a_workflow_engines_trace_continues_through_the_execution_into_its_job() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "otlp").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let (endpoint, bodies) = receiver(None).await;
    let mut op = start_operator(env, "operator-otlp", &["--otlp-endpoint", &endpoint]).await;
    let api: Api<KubernetesExecution> = Api::namespaced(client.clone(), &ns);
    let mut e = KubernetesExecution::new(
        "traced",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
    );
    // What a workflow engine sets: its step span's W3C traceparent.
    e.metadata.annotations = Some(
        [(
            kubernetes_executor_actors::trace::TRACEPARENT_ANNOTATION.to_string(),
            format!("00-{ENGINE_TRACE}-{ENGINE_SPAN}-01"),
        )]
        .into(),
    );
    api.create(&PostParams::default(), &e)
        .await
        .expect("create");
    let done = wait_terminal(&client, &ns, "traced").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    let key = format!("{ns}/traced");
    let uid = done.metadata.uid.clone().unwrap_or_default();
    // run-action flushes before it exits; SIGTERM flushes the operator's.
    op.proc.signal("TERM").expect("term");
    eventually("the execution's and the Job's spans", WAIT, || async {
        let s = spans(&bodies);
        Ok(s.iter().any(|s| s.name == "run-action")
            && s.iter()
                .any(|s| s.name == "execution" && attr(s, "key") == Some(key.as_str())))
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "spans missing: {e}\n{:?}\n{}",
            spans(&bodies).iter().map(|s| &s.name).collect::<Vec<_>>(),
            op.proc.log_tail(3000)
        )
    });
    let all = spans(&bodies);
    let exec = all
        .iter()
        .find(|s| s.name == "execution" && attr(s, "key") == Some(key.as_str()))
        .expect("execution span");
    assert_eq!(exec.service, "kubernetes-executor");
    assert_eq!(attr(exec, "uid"), Some(uid.as_str()));
    assert_eq!(exec.trace_id, ENGINE_TRACE, "the engine's trace");
    assert_eq!(exec.parent, ENGINE_SPAN, "a child of the engine's span");
    let transitions: Vec<&Span> = all
        .iter()
        .filter(|s| s.name == "transition" && s.parent == exec.span_id)
        .collect();
    for to in ["Validating", "Executing", "Verifying", "Completed"] {
        assert!(
            transitions.iter().any(|s| attr(s, "to") == Some(to)),
            "a transition span to {to}: {transitions:?}"
        );
    }
    let run = all
        .iter()
        .find(|s| s.name == "run-action" && s.trace_id == ENGINE_TRACE)
        .unwrap_or_else(|| panic!("run-action continues the trace: {all:?}"));
    assert_eq!(
        run.parent, exec.span_id,
        "the Job's span is the execution's child"
    );
    assert_eq!(run.service, "kubernetes-executor-action");
    assert_eq!(attr(run, "action"), Some("ScaleDeployment"));
    // Log lines of the execution carry the trace ID.
    let log = std::fs::read_to_string(op.proc.log_path()).expect("operator log");
    assert!(
        log.lines().any(|l| l.contains("trace_id")
            && l.contains(ENGINE_TRACE)
            && l.contains("phase transition")),
        "no log line with the trace ID:\n{}",
        op.proc.log_tail(3000)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_collector_and_the_standard_environment() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "otlps").await;
    let pki_dir = tempfile::tempdir().expect("tempdir");
    let (endpoint, bodies) = receiver(Some(pki_dir.path())).await;
    let ca = pki_dir.path().join("ca.crt").display().to_string();
    let traces = format!("{endpoint}/v1/traces");
    let mut op = start_operator_with_env(
        env,
        "operator-otlps",
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.as_str()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.as_str()),
            ("OTEL_SERVICE_NAME", "remediation-operator"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=staging,team=sre",
            ),
        ],
    )
    .await;
    // An unknown action: refused at validation, no Job; its span is enough.
    create(
        &client,
        &ns,
        "unknown",
        spec("NoSuchAction", "Deployment", "web", None, &[]),
    )
    .await;
    let done = wait_terminal(&client, &ns, "unknown").await;
    assert_eq!(phase(&done), Phase::Failed);
    op.proc.signal("TERM").expect("term");
    let key = format!("{ns}/unknown");
    eventually("spans over https", WAIT, || async {
        Ok(spans(&bodies)
            .iter()
            .any(|s| s.name == "execution" && attr(s, "key") == Some(key.as_str())))
    })
    .await
    .unwrap_or_else(|e| panic!("no span over https: {e}\n{}", op.proc.log_tail(3000)));
    let all = spans(&bodies);
    let exec = all
        .iter()
        .find(|s| s.name == "execution" && attr(s, "key") == Some(key.as_str()))
        .expect("span");
    assert_eq!(
        exec.service, "remediation-operator",
        "OTEL_SERVICE_NAME wins"
    );
    for (k, v) in [("deployment.environment", "staging"), ("team", "sre")] {
        assert!(
            exec.resource.iter().any(|(a, b)| a == k && b == v),
            "resource attribute {k}={v}: {:?}",
            exec.resource
        );
    }
    assert_eq!(
        exec.parent, "",
        "no traceparent: a root span, its own trace"
    );
}
