//! The HTTP side: `POST /` for JSON-RPC (JSON bodies only, bounded in size, CORS as
//! configured), `GET /` upgrading to a WebSocket (bounded in connections), and the metrics
//! server.

use super::{handle_body, ws, Cors, Rpc};
use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, State, WebSocketUpgrade},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
};

/// Whether the request's `Content-Type` is JSON. Browsers send a cross-site form or a
/// `text/plain` fetch without asking first; JSON needs a CORS preflight, which the node only
/// grants to the origins it is told to.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The `Access-Control-Allow-Origin` value for this request, if its origin may call.
fn allowed_origin(cors: &Cors, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    match cors {
        Cors::Any => Some(HeaderValue::from_static("*")),
        _ => cors.allows(origin.to_str().ok()?).then(|| origin.clone()),
    }
}

async fn http(State(rpc): State<Arc<Rpc>>, headers: HeaderMap, body: Bytes) -> Response {
    let origin = allowed_origin(&rpc.limits.cors, &headers);
    let mut response = if !is_json(&headers) {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid content type, only application/json is supported",
        )
            .into_response()
    } else {
        match handle_body(&rpc, &body).await {
            Some(value) => (
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_vec(&value).unwrap_or_default(),
            )
                .into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        }
    };
    if let Some(origin) = origin {
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    response
}

/// The CORS preflight: granted to allowed origins only.
async fn preflight(State(rpc): State<Arc<Rpc>>, headers: HeaderMap) -> Response {
    let Some(origin) = allowed_origin(&rpc.limits.cors, &headers) else {
        return (StatusCode::FORBIDDEN, "origin not allowed (--http-cors)").into_response();
    };
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static("content-type"));
    (
        StatusCode::NO_CONTENT,
        [
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("POST, GET, OPTIONS"),
            ),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, requested),
            (
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            ),
        ],
    )
        .into_response()
}

async fn upgrade(
    State(rpc): State<Arc<Rpc>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // Browsers send their page's origin and do not ask first for WebSockets: a page the
    // operator did not allow must not reach the node this way either.
    if headers.contains_key(header::ORIGIN) && allowed_origin(&rpc.limits.cors, &headers).is_none()
    {
        return (StatusCode::FORBIDDEN, "origin not allowed (--http-cors)").into_response();
    }
    let open = rpc.ws_open.fetch_add(1, Ordering::SeqCst);
    if open >= rpc.limits.ws_connections {
        rpc.ws_open.fetch_sub(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many WebSocket connections: at most {} (--ws-max-connections)",
                rpc.limits.ws_connections
            ),
        )
            .into_response();
    }
    let limit = rpc.limits.ws_message_bytes;
    // Released when the connection ends, or when the upgrade fails and the closure is dropped.
    let slot = WsSlot(rpc.clone());
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            ws::serve(slot.0.clone(), socket).await;
        })
}

/// One counted WebSocket connection.
struct WsSlot(Arc<Rpc>);

impl Drop for WsSlot {
    fn drop(&mut self) {
        self.0.ws_open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn metrics(State(rpc): State<Arc<Rpc>>) -> Response {
    let chain = &rpc.chain;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        chain.metrics.render(chain.head().header.number),
    )
        .into_response()
}

/// The JSON-RPC router (HTTP POST and WebSocket upgrade on `/`).
pub fn router(rpc: Arc<Rpc>) -> Router {
    let body_limit = rpc.limits.max_body_bytes;
    Router::new()
        .route("/", get(upgrade).post(http).options(preflight))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(rpc)
}

/// The metrics router (`GET /metrics`).
pub fn metrics_router(rpc: Arc<Rpc>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(rpc)
}

/// Binds `addr` and serves `router` until the process ends.
pub async fn serve(addr: SocketAddr, router: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "server stopped");
        }
    });
    Ok(bound)
}
