//! Which execution an API request is made for. Every ExecutionActor gets its
//! own `kube::Client` whose requests carry `User-Agent: kubernetes-executor/<v>
//! (execution <uid>)`, so API server audit logs tie requests to executions.
//! The per-execution clients share one underlying service stack (one
//! connection pool, one auth refresher): each adds only a header-stamping
//! layer and kube's small request buffer.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{HeaderValue, USER_AGENT};
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use kube::client::{Body, ClientBuilder};
use tower::buffer::Buffer;
use tower::util::BoxCloneService;
use tower::{BoxError, Service, ServiceExt};

/// Product token of every User-Agent the operator sends.
pub const PRODUCT: &str = concat!("kubernetes-executor/", env!("CARGO_PKG_VERSION"));

type Shared = BoxCloneService<Request<Body>, Response<UnsyncBoxBody<Bytes, BoxError>>, BoxError>;

/// A layer that buffers kube's service stack and keeps a shareable handle.
struct Capture<B> {
    slot: Arc<Mutex<Option<Shared>>>,
    _body: PhantomData<fn() -> B>,
}

impl<S, B> tower::Layer<S> for Capture<B>
where
    S: Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Service = Shared;

    fn layer(&self, inner: S) -> Shared {
        let inner = inner
            .map_response(|r: Response<B>| r.map(|b| b.map_err(Into::into).boxed_unsync()))
            .map_err(Into::into);
        let shared = BoxCloneService::new(Buffer::new(inner, 1024));
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Some(shared.clone());
        }
        shared
    }
}

/// Builds clients that share one connection pool but differ in User-Agent.
#[derive(Clone)]
pub struct Clients {
    shared: Arc<Mutex<Shared>>,
    default_ns: String,
}

impl Clients {
    /// Shares the service stack kube builds from `config` (TLS, auth, ...).
    /// Call inside a tokio runtime (the shared buffer runs as a task).
    pub fn new(config: kube::Config) -> Result<Clients, kube::Error> {
        let default_ns = config.default_namespace.clone();
        let slot = Arc::new(Mutex::new(None));
        let _ = ClientBuilder::try_from(config)?.with_layer(&Capture {
            slot: slot.clone(),
            _body: PhantomData,
        });
        let shared =
            slot.lock().ok().and_then(|mut s| s.take()).ok_or_else(|| {
                kube::Error::Service("client service stack was not captured".into())
            })?;
        Ok(Clients {
            shared: Arc::new(Mutex::new(shared)),
            default_ns,
        })
    }

    /// A client whose requests carry `user_agent`.
    pub fn with_user_agent(&self, user_agent: &str) -> kube::Client {
        let value = HeaderValue::from_str(user_agent).unwrap_or(HeaderValue::from_static(PRODUCT));
        let base = self.shared.lock().map(|s| s.clone());
        let base = match base {
            Ok(b) => b,
            Err(p) => p.into_inner().clone(),
        };
        let svc = base.map_request(move |mut req: Request<Body>| {
            req.headers_mut().insert(USER_AGENT, value.clone());
            req
        });
        kube::Client::new(svc, self.default_ns.clone())
    }

    /// The operator's own client (no execution).
    pub fn operator(&self) -> kube::Client {
        self.with_user_agent(PRODUCT)
    }

    /// The client for requests made for execution `uid`.
    pub fn for_execution(&self, uid: &str) -> kube::Client {
        self.with_user_agent(&format!("{PRODUCT} (execution {uid})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends one request with `client_for` and returns the User-Agent the server saw.
    async fn captured_user_agent(client_for: impl FnOnce(&Clients) -> kube::Client) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url: http::Uri = format!("http://{}", listener.local_addr().expect("addr"))
            .parse()
            .expect("uri");
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.expect("read");
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        let clients = Clients::new(kube::Config::new(url)).expect("clients");
        let client = client_for(&clients);
        let req = http::Request::get("/version")
            .body(Vec::new())
            .expect("req");
        let _ = client.request_text(req).await;
        let head = server.await.expect("server");
        head.lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("user-agent:")
                    .then(|| l[11..].trim().to_string())
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn requests_for_an_execution_carry_its_uid() {
        let ua = captured_user_agent(|c| c.for_execution("0b5c7e1a-uid")).await;
        assert_eq!(ua, format!("{PRODUCT} (execution 0b5c7e1a-uid)"));
        assert_eq!(captured_user_agent(|c| c.operator()).await, PRODUCT);
    }
}
