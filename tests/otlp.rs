//! Trace export: an operator pointed at an OTLP/HTTP receiver exports one
//! execution's span with its phase transitions, Pending to Completed.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use kubernetes_executor_crds::Phase;
use kubernetes_executor_testkit::eventually;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal OTLP/HTTP receiver: accepts POSTs, keeps the bodies.
async fn receiver() -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
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
                            s.extend_from_slice(&buf[end + 4..end + 4 + len]);
                        }
                        buf.drain(..end + 4 + len);
                        if conn
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), bodies)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_execution_exports_its_span_with_every_transition() {
    let _serial = exclusive().await;
    let env = env();
    let client = env.client().await.expect("client");
    let ns = namespace(&client, "otlp").await;
    deployment(&client, &ns, "web", 1, json!({}), true).await;
    let (endpoint, bodies) = receiver().await;
    let mut op = start_operator(env, "operator-otlp", &["--otlp-endpoint", &endpoint]).await;
    create(
        &client,
        &ns,
        "traced",
        spec(
            "ScaleDeployment",
            "Deployment",
            "web",
            None,
            &[("replicas", "2")],
        ),
    )
    .await;
    let done = wait_terminal(&client, &ns, "traced").await;
    assert_eq!(phase(&done), Phase::Completed, "{:?}", done.status);
    // SIGTERM flushes the batch exporter.
    op.proc.signal("TERM").expect("term");
    let key = format!("{ns}/traced");
    let uid = done.metadata.uid.clone().unwrap_or_default();
    eventually("spans received", WAIT, || async {
        let b = bodies
            .lock()
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default();
        Ok(b.contains(&key))
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the execution span was not exported: {e}\n{}",
            op.proc.log_tail(3000)
        )
    });
    let body = bodies
        .lock()
        .map(|b| String::from_utf8_lossy(&b).to_string())
        .unwrap_or_default();
    assert!(body.contains("kubernetes-executor"), "service name");
    assert!(
        body.contains("execution") && body.contains(&uid),
        "execution span carries key and UID"
    );
    for phase in ["Validating", "Executing", "Verifying", "Completed"] {
        assert!(body.contains(phase), "a transition span to {phase}");
    }
    assert!(body.contains("transition"), "transition spans");
}
