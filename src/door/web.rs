//! The web door: the browser client (B/S next to the C/S doors). One
//! listener serves the page (embedded in the binary: no CDN, no internet),
//! a WebSocket endpoint speaking the JSON schema of the TCP door's JSON
//! mode, `/healthz` and `/metrics`.
//!
//! The WebSocket handshake checks `Origin`: a page on another site cannot
//! open a chat session with a visitor's browser (cross-site WebSocket
//! hijacking). Every response carries a Content-Security-Policy that lets
//! the page run only its own script.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::SinkExt;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::driver::{serve_member, Wire};
use super::tcp::listen;
use super::{Door, DoorContext};
use crate::hub::{DoorKind, Hub};
use crate::protocol::command::ModeSwitch;
use crate::protocol::{ClientCommand, ErrorCode, Outgoing, ServerEvent, WireMode};
use crate::session::{Input, Limits};

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");
const FAVICON: &str = include_str!("../../web/favicon.svg");

/// The page may run its own script and style and talk to its own origin,
/// nothing else; no other site may frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Largest WebSocket message accepted at all; larger ones end the
/// connection. Below it, messages over `--max-line` get an error and the
/// connection stays, as on TCP.
const MAX_FRAME: usize = 64 * 1024;

/// The WebSocket's read and write buffers. tungstenite's defaults (128 KiB
/// each) made an idle browser cost 144 KiB of server memory; chat frames
/// are small, and a bigger message just takes more than one read.
const SOCKET_BUFFER: usize = 4 * 1024;

/// What every request handler shares.
#[derive(Clone)]
struct WebState {
    hub: Hub,
    limits: Arc<Limits>,
    /// Origins allowed besides the page's own.
    extra_origins: Arc<Vec<String>>,
    tracker: TaskTracker,
}

/// The web door, bound: the page, `/healthz`, `/metrics` and `/ws`.
#[derive(Debug)]
pub struct WebDoor {
    listener: TcpListener,
    /// Origins allowed besides the page's own.
    extra_origins: Vec<String>,
}

impl WebDoor {
    /// Binds the door to `addr`; pages from `extra_origins` may open
    /// WebSockets too.
    pub fn bind(addr: SocketAddr, extra_origins: Vec<String>) -> io::Result<Self> {
        Ok(WebDoor {
            listener: listen(addr)?,
            extra_origins,
        })
    }
}

impl Door for WebDoor {
    fn name(&self) -> &'static str {
        "web"
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The page's address, for a browser: `listening web http://ADDR/`.
    fn listening_line(&self) -> Option<String> {
        self.local_addr()
            .map(|addr| format!("listening web http://{addr}/"))
    }

    fn serve(self: Box<Self>, context: DoorContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(serve(self.listener, self.extra_origins, context))
    }
}

/// Serves HTTP and WebSocket clients until shutdown.
async fn serve(listener: TcpListener, extra_origins: Vec<String>, context: DoorContext) {
    let DoorContext {
        hub,
        limits,
        shutdown,
        tracker,
    } = context;
    let state = WebState {
        hub,
        limits,
        extra_origins: Arc::new(extra_origins),
        tracker,
    };
    let app = Router::new()
        .route(
            "/",
            get(|| async { page(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { page(APP_CSS, "text/css; charset=utf-8") }),
        )
        // Browsers ask for /favicon.ico unless the page names its icon.
        .route(
            "/favicon.svg",
            get(|| async { page(FAVICON, "image/svg+xml") }),
        )
        .route(
            "/favicon.ico",
            get(|| async { page(FAVICON, "image/svg+xml") }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/ws", get(upgrade))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(error) = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(%error, "web door stopped");
    }
}

fn page(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn metrics(State(state): State<WebState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        state.hub.metrics().render(),
    )
        .into_response()
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Whether a browser page from `origin` may open a session. Clients that
/// send no `Origin` (not browsers) are not at risk of hijacking.
fn origin_allowed(headers: &HeaderMap, extra: &[String]) -> bool {
    let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|value| value.to_str().ok())
    else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok());
    let same_site = host.is_some_and(|host| {
        origin == format!("http://{host}") || origin == format!("https://{host}")
    });
    same_site || extra.iter().any(|allowed| allowed == origin)
}

async fn upgrade(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &state.extra_origins) {
        tracing::warn!(%peer, origin = ?headers.get(header::ORIGIN), "cross-origin WebSocket refused");
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused\n").into_response();
    }
    let span = tracing::info_span!("web", %peer);
    let tracker = state.tracker.clone();
    // Frames are capped as messages are: a frame is buffered whole, so
    // without its own cap an unfinished one could hold up to the
    // library's 16 MiB per connection.
    upgrade
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .on_upgrade(move |socket| {
            let wire = WebSocketWire::new(socket, state.limits.max_line);
            let member = serve_member(wire, state.hub, DoorKind::Web, peer.ip(), state.limits);
            tracker.track_future(member.instrument(span))
        })
}

/// JSON commands and events over a WebSocket, one per text frame.
struct WebSocketWire {
    socket: WebSocket,
    max_line: usize,
    /// The input from the last frame received, not yet taken.
    received: Option<Input>,
    /// Frames encoded, to be sent at the next flush; each leaves only once
    /// fed, so a flush cut short loses nothing and repeats nothing.
    outgoing: std::collections::VecDeque<Message>,
    /// Frames the socket has taken so far: the measure of write progress.
    frames_taken: u64,
}

impl WebSocketWire {
    fn new(socket: WebSocket, max_line: usize) -> Self {
        WebSocketWire {
            socket,
            max_line,
            received: None,
            outgoing: std::collections::VecDeque::new(),
            frames_taken: 0,
        }
    }

    fn input(&self, text: &str) -> Input {
        let max = self.max_line;
        if max > 0 && text.len() > max {
            let message = format!("message longer than {max} bytes; it was dropped");
            return Input::Refused(ServerEvent::error(ErrorCode::LineTooLong, message));
        }
        match serde_json::from_str::<ClientCommand>(text) {
            Ok(command) => Input::Command(command),
            Err(_) if serde_json::from_str::<ModeSwitch>(text).is_ok() => Input::Refused(
                ServerEvent::error(ErrorCode::Usage, "the web door speaks JSON only"),
            ),
            Err(error) => {
                let message = format!("not a command object: {error}");
                Input::Refused(ServerEvent::error(ErrorCode::BadJson, message))
            }
        }
    }
}

/// An event as one WebSocket text frame: its cached JSON, shared, not
/// re-encoded.
fn text_frame(event: &Outgoing) -> Message {
    let line = event.encoded(WireMode::Json);
    let json = line.slice(..line.len() - 1);
    // The JSON encoding is valid UTF-8 by construction.
    Message::Text(Utf8Bytes::try_from(json).expect("JSON is UTF-8"))
}

impl Wire for WebSocketWire {
    fn next_input(&mut self) -> Option<Input> {
        self.received.take()
    }

    async fn receive(&mut self) -> io::Result<bool> {
        loop {
            // `recv` is cancel-safe (a stream's `next`).
            let input = match self.socket.recv().await {
                Some(Ok(Message::Text(text))) => self.input(text.as_str()),
                Some(Ok(Message::Binary(_))) => Input::Refused(ServerEvent::error(
                    ErrorCode::BadJson,
                    "send JSON commands as text frames",
                )),
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                // The tab closed or navigated away: a goodbye.
                Some(Ok(Message::Close(_))) | None => return Ok(false),
                Some(Err(error)) => return Err(io::Error::other(error)),
            };
            self.received = Some(input);
            return Ok(true);
        }
    }

    fn encode(&mut self, event: &Outgoing) {
        self.outgoing.push_back(text_frame(event));
    }

    fn written(&self) -> u64 {
        self.frames_taken
    }

    async fn flush(&mut self) -> io::Result<()> {
        while let Some(frame) = self.outgoing.front() {
            // Messages share their bytes: this clone is a count.
            self.socket
                .feed(frame.clone())
                .await
                .map_err(io::Error::other)?;
            self.outgoing.pop_front();
            self.frames_taken += 1;
        }
        self.socket.flush().await.map_err(io::Error::other)
    }

    async fn close(&mut self) -> io::Result<()> {
        self.socket.close().await.map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn origins() {
        let extra = vec!["https://chat.example".to_string()];
        assert!(origin_allowed(
            &headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
            &[]
        ));
        assert!(origin_allowed(&headers(None, "127.0.0.1:8080"), &[]));
        assert!(!origin_allowed(
            &headers(Some("http://evil.example"), "127.0.0.1:8080"),
            &[]
        ));
        assert!(!origin_allowed(
            &headers(Some("http://127.0.0.1:9999"), "127.0.0.1:8080"),
            &[]
        ));
        assert!(origin_allowed(
            &headers(Some("https://chat.example"), "127.0.0.1:8080"),
            &extra
        ));
    }
}
