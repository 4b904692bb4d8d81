//! The router: one handler per endpoint (one file each), and the layers every request goes
//! through — the request counter, the API key, CORS, the body limit and a last-resort panic
//! catcher that still answers in OpenAI's error shape.

mod chat;
mod completions;
mod images;
mod info;
mod playground;
mod speech;
pub(crate) mod stream;
mod text;
mod tokenize;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::mpsc::UnboundedReceiver;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::api::BodyLimit;
use crate::error::ApiError;
use crate::jobs::Limits;
use crate::models::Served;
use crate::stats;
use crate::worker::{Finished, Token, Update};

/// What every handler can reach. Lives as long as the server.
pub struct Shared {
    pub models: Vec<&'static Served>,
    pub limits: Limits,
    pub api_key: Option<String>,
    pub metrics: PrometheusHandle,
}

pub type App = State<&'static Shared>;

impl Shared {
    /// The model a request names (404 if this server does not serve it).
    pub fn model(&self, name: &str) -> Result<&'static Served, ApiError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .copied()
            .ok_or_else(|| {
                let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
                ApiError::unknown_model(name, &names)
            })
    }
}

/// The whole application.
pub fn router(shared: &'static Shared, body_limit: usize, cors: Option<&str>) -> Router {
    let mut app = Router::new()
        .route("/", get(playground::page))
        .route("/playground.js", get(playground::script))
        .route("/playground.css", get(playground::style))
        .route("/health", get(info::health))
        .route("/metrics", get(info::metrics))
        .route("/v1/models", get(info::models))
        .route("/v1/models/{model}", get(info::model))
        .route("/v1/completions", post(completions::handle))
        .route("/v1/chat/completions", post(chat::handle))
        .route("/v1/images/generations", post(images::handle))
        .route("/v1/audio/speech", post(speech::handle))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(shared, authorise))
        .layer(middleware::from_fn(count_requests))
        .layer(middleware::from_fn_with_state(
            body_limit,
            refuse_large_bodies,
        ))
        .layer(axum::Extension(BodyLimit(body_limit)))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("the server failed on this request (a panic); it keeps serving")
                .into_response()
        }))
        .with_state(shared);
    if let Some(origin) = cors {
        app = app.layer(cors_layer(origin));
    }
    app
}

/// CORS is closed unless the server was told which origin may call it (`*` for any).
fn cors_layer(origin: &str) -> CorsLayer {
    let allow = if origin == "*" {
        AllowOrigin::any()
    } else {
        // Only a request from that origin is told it may read the answer.
        let allowed = HeaderValue::from_str(origin).unwrap_or(HeaderValue::from_static("null"));
        AllowOrigin::predicate(move |given: &HeaderValue, _| *given == allowed)
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

/// With an API key, every route but the health check and the playground page itself needs
/// `Authorization: Bearer KEY` (the page asks for the key when the API answers 401).
async fn authorise(State(shared): App, request: Request, next: Next) -> Response {
    let Some(key) = &shared.api_key else {
        return next.run(request).await;
    };
    let open = matches!(
        request.uri().path(),
        "/" | "/health" | "/playground.js" | "/playground.css"
    );
    if open || request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same(g.trim().as_bytes(), key.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the API key is wrong").into_response(),
        None => {
            ApiError::unauthorized("this server needs an API key: send `Authorization: Bearer KEY`")
                .into_response()
        }
    }
}

/// A body announced (Content-Length) larger than the limit is refused at once, before the
/// client has sent it.
async fn refuse_large_bodies(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(n) if n > limit as u64 => ApiError::too_large(limit).into_response(),
        _ => next.run(request).await,
    }
}

/// Compares keys in time that does not depend on where they first differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts every request by the route it matched and the status it got.
async fn count_requests(request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |p| p.as_str().to_string());
    let response = next.run(request).await;
    stats::request(&endpoint, response.status().as_u16());
    response
}

/// A fresh id for a response (`chatcmpl-...`).
pub fn response_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{prefix}-{:016x}", h.finish())
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Waits for a job's end, keeping its tokens when `keep` (for log-probabilities).
pub async fn collect(
    mut rx: UnboundedReceiver<Update>,
    keep: bool,
) -> Result<(Vec<Token>, Finished), anyhow::Error> {
    let mut tokens = Vec::new();
    while let Some(update) = rx.recv().await {
        match update {
            Update::Token(t) if keep => tokens.push(t),
            Update::Token(_) => {}
            Update::Done(done) => return Ok((tokens, done)),
            Update::Failed(e) => return Err(e),
        }
    }
    Err(anyhow::anyhow!(
        "the model's worker stopped before the job finished"
    ))
}
