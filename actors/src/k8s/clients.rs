//! Which execution an API request is made for. Requests made for an
//! execution carry `User-Agent: kubernetes-executor/<v> (execution <uid>)`,
//! so API server audit logs tie requests to executions.
//!
//! One shared client serves every execution (one connection pool, one auth
//! refresher, one request buffer): the User-Agent is set per request from
//! the execution's tracing span, which [`tag_span`] marks with it. tower's
//! buffer carries the caller's span to the worker that sends the request,
//! so the header-stamping layer finds the mark on the current span or an
//! ancestor. A request made outside a marked span (a task spawned without
//! the span) carries the operator's plain User-Agent. This needs the
//! `tracing_subscriber` registry as the global subscriber and the execution
//! span recorded: the operator's telemetry keeps the actors crate's spans
//! whatever `RUST_LOG` says (per-layer filters).

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
use tracing_subscriber::registry::LookupSpan;

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
    requests: Option<prometheus::IntCounterVec>,
    execution_limit: Option<Arc<tokio::sync::Semaphore>>,
    /// The one client of every execution (built on first use).
    executions: Arc<std::sync::OnceLock<kube::Client>>,
}

/// An execution's User-Agent, kept in its span's extensions.
#[derive(Clone)]
struct ExecutionAgent(HeaderValue);

/// The User-Agent naming execution `uid`.
pub fn execution_agent(uid: &str) -> String {
    format!("{PRODUCT} (execution {uid})")
}

/// Marks `span` (an execution's) so that requests made inside it — or inside
/// its children — carry the execution's User-Agent. No-op when the span is
/// disabled or the subscriber is not the `tracing_subscriber` registry.
pub fn tag_span(span: &tracing::Span, uid: &str) {
    let Ok(value) = HeaderValue::from_str(&execution_agent(uid)) else {
        return;
    };
    span.with_subscriber(|(id, dispatch)| {
        if let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>()
            && let Some(data) = registry.span(id)
        {
            data.extensions_mut().insert(ExecutionAgent(value));
        }
    });
}

/// The User-Agent marked on the current span or its nearest ancestor.
fn current_agent() -> Option<HeaderValue> {
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
            let span = registry.span(id)?;
            span.scope()
                .find_map(|s| s.extensions().get::<ExecutionAgent>().map(|a| a.0.clone()))
        })
        .flatten()
}

/// The resource a request path addresses (`/api/v1/namespaces/a/pods/b` →
/// `pods`, `/apis/batch/v1/namespaces/a/jobs` → `jobs`, `.../pods/x/eviction`
/// → `pods/eviction`).
pub fn resource_of(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('?')
        .next()
        .unwrap_or_default()
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let rest = match parts.first() {
        Some(&"api") => parts.get(2..).unwrap_or_default(),
        Some(&"apis") => parts.get(3..).unwrap_or_default(),
        _ => return "other".into(),
    };
    let rest = if rest.first() == Some(&"namespaces") && rest.len() > 2 {
        &rest[2..]
    } else {
        rest
    };
    match rest {
        [] => "discovery".into(),
        [r] | [r, _] => r.to_string(),
        [r, _, sub, ..] => format!("{r}/{sub}"),
    }
}

/// The Kubernetes verb of a request (`list`/`watch` for collection GETs).
fn verb_of(req: &Request<Body>) -> &'static str {
    let query = req.uri().query().unwrap_or_default();
    match *req.method() {
        http::Method::GET if query.contains("watch=true") || query.contains("watch=1") => "watch",
        http::Method::GET => {
            // A GET of a named object has an odd number of path parts after the resource.
            let path = req.uri().path();
            let named = !matches!(resource_of(path).as_str(), "discovery" | "other")
                && path
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .is_some_and(|last| {
                        last != resource_of(path).split('/').next().unwrap_or_default()
                    });
            if named { "get" } else { "list" }
        }
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
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
            requests: None,
            execution_limit: None,
            executions: Arc::default(),
        })
    }

    /// Counts every request in `counter{verb,resource,outcome}`.
    pub fn with_request_metrics(mut self, counter: prometheus::IntCounterVec) -> Self {
        self.requests = Some(counter);
        self
    }

    /// At most `max` requests made for executions are in flight at once
    /// (all execution clients share the permits); the rest wait in the
    /// operator instead of flooding the API server, whose priority-and-
    /// fairness queues answer floods with 429. The operator's own client
    /// (watches, leader lease, events) is not limited, so leadership never
    /// waits behind execution work.
    pub fn with_execution_limit(mut self, max: usize) -> Self {
        self.execution_limit = Some(Arc::new(tokio::sync::Semaphore::new(max.max(1))));
        self
    }

    /// A client whose requests carry `user_agent`.
    pub fn with_user_agent(&self, user_agent: &str) -> kube::Client {
        let value = HeaderValue::from_str(user_agent).unwrap_or(HeaderValue::from_static(PRODUCT));
        self.client(move || value.clone(), None)
    }

    fn client(
        &self,
        agent: impl Fn() -> HeaderValue + Clone + Send + Sync + 'static,
        limit: Option<Arc<tokio::sync::Semaphore>>,
    ) -> kube::Client {
        let base = self.shared.lock().map(|s| s.clone());
        let base = match base {
            Ok(b) => b,
            Err(p) => p.into_inner().clone(),
        };
        let counter = self.requests.clone();
        let svc = base.map_request(move |mut req: Request<Body>| {
            req.headers_mut().insert(USER_AGENT, agent());
            req
        });
        let svc = Counted {
            inner: svc,
            counter,
        };
        match limit {
            Some(sem) => kube::Client::new(
                tower::limit::ConcurrencyLimit::with_semaphore(svc, sem),
                self.default_ns.clone(),
            ),
            None => kube::Client::new(svc, self.default_ns.clone()),
        }
    }

    /// The operator's own client (no execution).
    pub fn operator(&self) -> kube::Client {
        self.with_user_agent(PRODUCT)
    }

    /// The one client for requests made for executions: each request's
    /// User-Agent names the execution whose span ([`tag_span`]) it is made
    /// in; requests share the execution concurrency limit.
    pub fn executions(&self) -> kube::Client {
        self.executions
            .get_or_init(|| {
                self.client(
                    || current_agent().unwrap_or(HeaderValue::from_static(PRODUCT)),
                    self.execution_limit.clone(),
                )
            })
            .clone()
    }
}

/// Counts requests by verb, resource and outcome (2xx/4xx/5xx/error).
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    counter: Option<prometheus::IntCounterVec>,
}

impl<S> Service<Request<Body>> for Counted<S>
where
    S: Service<
            Request<Body>,
            Response = Response<UnsyncBoxBody<Bytes, BoxError>>,
            Error = BoxError,
        >,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let labels = self
            .counter
            .as_ref()
            .map(|c| (c.clone(), verb_of(&req), resource_of(req.uri().path())));
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            if let Some((counter, verb, resource)) = labels {
                let outcome = match &res {
                    Ok(r) if r.status().is_success() => "2xx",
                    // Throttled (API Priority and Fairness): its own value,
                    // for the dashboard's panel and the throttling alert.
                    Ok(r) if r.status().as_u16() == 429 => "429",
                    Ok(r) if r.status().is_client_error() => "4xx",
                    Ok(_) => "5xx",
                    Err(_) => "error",
                };
                counter
                    .with_label_values(&[verb, resource.as_str(), outcome])
                    .inc();
            }
            res
        })
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

    #[test]
    fn resources_from_paths() {
        assert_eq!(resource_of("/api/v1/namespaces/a/pods/b"), "pods");
        assert_eq!(
            resource_of("/api/v1/namespaces/a/pods/b/eviction"),
            "pods/eviction"
        );
        assert_eq!(resource_of("/apis/batch/v1/namespaces/a/jobs"), "jobs");
        assert_eq!(
            resource_of("/apis/apps/v1/namespaces/a/deployments/web/scale"),
            "deployments/scale"
        );
        assert_eq!(resource_of("/api/v1/nodes/n1"), "nodes");
        assert_eq!(
            resource_of(
                "/apis/kubernetesexecution.kubernaut.io/v1alpha1/kubernetesexecutions?watch=true"
            ),
            "kubernetesexecutions"
        );
        assert_eq!(resource_of("/version"), "other");
    }

    #[tokio::test]
    async fn requests_for_an_execution_carry_its_uid() {
        use tracing::Instrument;
        // (A current-thread runtime: the thread's default subscriber is the
        // one the buffer's worker task sees too.)
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::Registry::default());
        let span = tracing::info_span!("execution");
        tag_span(&span, "0b5c7e1a-uid");
        let ua = captured_user_agent(|c| c.executions())
            .instrument(span.clone())
            .await;
        assert_eq!(ua, format!("{PRODUCT} (execution 0b5c7e1a-uid)"));
        // A child span (a phase transition) inherits it.
        let child = tracing::info_span!(parent: &span, "transition");
        let ua = captured_user_agent(|c| c.executions())
            .instrument(child)
            .await;
        assert_eq!(ua, format!("{PRODUCT} (execution 0b5c7e1a-uid)"));
        // Outside an execution's span: the operator's User-Agent.
        assert_eq!(captured_user_agent(|c| c.executions()).await, PRODUCT);
        assert_eq!(captured_user_agent(|c| c.operator()).await, PRODUCT);
    }
}
