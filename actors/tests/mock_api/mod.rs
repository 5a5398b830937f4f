//! A mock API server for tests of one module: a tower service that hands
//! each request (method, path, JSON body) to a handler and answers with
//! the handler's (status, JSON body). Proof that a feature works comes
//! from the control plane tests; these check one module's requests.
#![allow(clippy::disallowed_types, dead_code)] // the mock is a kube::Client

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

/// A request as the handler sees it.
pub struct Req {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The URL path.
    pub path: String,
    /// The body (`Null` when empty or not JSON).
    pub body: Value,
}

/// A Kubernetes `Status` failure body.
pub fn failure(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
               "message": format!("mock {reason}"), "code": code}),
    )
}

/// A client whose every request is answered by `handler`.
pub fn client(
    handler: impl Fn(Req) -> (u16, Value) + Clone + Send + Sync + 'static,
) -> kube::Client {
    slow_client(handler, |_, _| std::time::Duration::ZERO)
}

/// [`client`] whose answer to `METHOD path` comes after `delay(method, path)`
/// (a loaded API server).
pub fn slow_client(
    handler: impl Fn(Req) -> (u16, Value) + Clone + Send + Sync + 'static,
    delay: impl Fn(&str, &str) -> std::time::Duration + Clone + Send + Sync + 'static,
) -> kube::Client {
    let svc = tower::service_fn(move |req: Request<Body>| {
        let (handler, delay) = (handler.clone(), delay.clone());
        async move {
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            tokio::time::sleep(delay(&method, &path)).await;
            let bytes = http_body_util::BodyExt::collect(req.into_body())
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, body) = handler(Req { method, path, body });
            let res = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
                .unwrap_or_else(|_| Response::new(Body::empty()));
            Ok::<_, std::convert::Infallible>(res)
        }
    });
    kube::Client::new(svc, "default")
}
