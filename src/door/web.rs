//! The web door: the browser client (B/S next to the C/S doors). One
//! listener serves the page (embedded in the binary: no CDN, no internet),
//! a WebSocket endpoint speaking the JSON schema of the TCP door's JSON
//! mode, `/healthz` and `/metrics`.
//!
//! What a browser could be tricked into is refused:
//! - a request naming a host the server does not answer to (DNS
//!   rebinding: an attacker's name pointed at 127.0.0.1);
//! - a WebSocket opened by another site's page (cross-site WebSocket
//!   hijacking), checked by `Origin`;
//! - a page framed or scripted by anyone else (Content-Security-Policy).
//!
//! Every connection holds a place in the hub's limits from accept on, and
//! one that sends no request for a while is closed, so half-sent requests
//! (slowloris) cannot take every descriptor.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::SinkExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;
use tracing::Instrument;

use super::driver::{serve_member, Wire};
use super::listener::{accept_failed, listen, watch_liveness};
use super::{Door, DoorContext};
use crate::hub::{DoorKind, Hub, Refusal, Reservation};
use crate::protocol::command::ModeSwitch;
use crate::protocol::{
    ClientCommand, DropReason, ErrorCode, Outgoing, ServerEvent, Violation, WireMode,
};
use crate::session::limits::{json_frame_limit, text_too_long};
use crate::session::{Input, Limits};
use crate::tls::ServerTls;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");
const FAVICON: &str = include_str!("../../web/favicon.svg");

/// The page may run its own script and style and talk to its own origin,
/// nothing else; no other site may frame it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The smallest cap on a WebSocket frame (and message); with a larger
/// `--max-line`, the cap grows to fit its JSON. Larger frames end the
/// connection (close code 1009); below the cap, a command whose text is
/// over `--max-line` gets an error and the connection stays, as on TCP.
const MIN_FRAME: usize = 64 * 1024;

/// The WebSocket's read and write buffers. tungstenite's defaults (128 KiB
/// each) made an idle browser cost 144 KiB of server memory; chat frames
/// are small, and a bigger message just takes more than one read.
const SOCKET_BUFFER: usize = 4 * 1024;

/// How long a connection may serve plain HTTP (the page, metrics) before
/// it is asked to close; a browser opens a new one when it needs one. A
/// WebSocket is past this: it is a member, with a member's limits.
pub const HTTP_LIFETIME: Duration = Duration::from_secs(60);

/// How long a refused connection is kept while its answer goes out.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// How long a closing HTTP connection may finish what it is serving.
const HTTP_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What every request handler shares.
#[derive(Clone)]
struct WebState {
    hub: Hub,
    limits: Arc<Limits>,
    /// Who may open WebSockets, and which hosts the door answers to.
    access: Arc<WebAccess>,
    tracker: TaskTracker,
}

/// Which requests a browser may make: the hosts named and the origins
/// allowed.
#[derive(Debug, Clone, Default)]
pub struct WebAccess {
    /// Host names (lowercase) answered besides IP addresses and localhost.
    hosts: Vec<String>,
    /// Origins allowed besides the page's own.
    origins: Vec<String>,
}

impl WebAccess {
    /// Answers `hosts`, this machine's name (and `NAME.local`) and the
    /// hosts of `origins`; allows pages from `origins` to open WebSockets.
    pub fn new(hosts: Vec<String>, origins: Vec<String>) -> Self {
        let machine = gethostname::gethostname().to_string_lossy().into_owned();
        let mut named: Vec<String> = hosts;
        if !machine.is_empty() {
            named.push(format!("{machine}.local"));
            named.push(machine);
        }
        named.extend(origins.iter().filter_map(|origin| {
            let authority = origin.split_once("://")?.1;
            Some(host_name(authority).to_string())
        }));
        let mut hosts: Vec<String> = named
            .iter()
            .map(|name| normalize_host(name))
            .filter(|name| !name.is_empty())
            .collect();
        hosts.sort();
        hosts.dedup();
        WebAccess { hosts, origins }
    }

    /// Whether a request with this `Host` is for this server. An IP
    /// address cannot be rebound to another server, and neither can
    /// `localhost`; any other name must be one the operator named. A
    /// request without `Host` (HTTP/1.0, not a browser) is answered.
    fn answers(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        let name = normalize_host(host_name(host));
        name.parse::<IpAddr>().is_ok() || name == "localhost" || self.hosts.contains(&name)
    }

    /// Whether a browser page from the request's `Origin` may open a
    /// session: the page's own origin (the host already checked by
    /// [`WebAccess::answers`]), or one allowed by `--web-origin`. Clients
    /// that send no `Origin` (not browsers) are not at risk of hijacking.
    fn allows_origin(&self, headers: &HeaderMap) -> bool {
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
        same_site || self.origins.iter().any(|allowed| allowed == origin)
    }
}

/// The host of a `Host` header or an origin's authority, without its port
/// (`[::1]:8080` gives `::1`).
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// A host name as compared: lowercase, without the root's trailing dot.
fn normalize_host(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The web door, bound: the page, `/healthz`, `/metrics` and `/ws`.
#[derive(Debug)]
pub struct WebDoor {
    listener: TcpListener,
    access: WebAccess,
    /// With a certificate, HTTPS (and WSS) on the same port as HTTP.
    tls: Option<Arc<ServerTls>>,
}

impl WebDoor {
    /// Binds the door to `addr`, answering the hosts and origins `access`
    /// allows.
    pub fn bind(addr: SocketAddr, access: WebAccess) -> io::Result<Self> {
        Ok(WebDoor {
            listener: listen(addr)?,
            access,
            tls: None,
        })
    }

    /// Serves HTTPS too, with `tls`'s certificate, on the same port.
    pub fn with_tls(mut self, tls: Option<Arc<ServerTls>>) -> Self {
        self.tls = tls;
        self
    }
}

impl Door for WebDoor {
    fn name(&self) -> &'static str {
        "web"
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The page's address, for a browser: `listening web http://ADDR/`,
    /// and with TLS `listening web https://ADDR/ sha256:...` too.
    fn listening_lines(&self) -> Vec<String> {
        let Some(addr) = self.local_addr() else {
            return Vec::new();
        };
        let mut lines = vec![format!("listening web http://{addr}/")];
        if let Some(tls) = &self.tls {
            lines.push(format!(
                "listening web https://{addr}/ {}",
                tls.fingerprint()
            ));
        }
        lines
    }

    fn serve(self: Box<Self>, context: DoorContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(serve(self.listener, self.access, self.tls, context))
    }
}

/// Serves HTTP and WebSocket clients until shutdown.
async fn serve(
    listener: TcpListener,
    access: WebAccess,
    tls: Option<Arc<ServerTls>>,
    context: DoorContext,
) {
    let DoorContext {
        hub,
        limits,
        shutdown,
        tracker,
        spare,
    } = context;
    let state = WebState {
        hub: hub.clone(),
        limits: limits.clone(),
        access: Arc::new(access),
        tracker: tracker.clone(),
    };
    let app = router(state);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                let full = http_refusal(&Refusal::ServerFull(hub.member_count()));
                accept_failed(&listener, &error, &spare, full.as_bytes()).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        watch_liveness(&stream, limits.liveness);
        let span = tracing::info_span!("web", %peer);
        match hub.reserve(Some(peer.ip())) {
            Ok(place) => {
                let timeout = limits.handshake_timeout;
                let connection = serve_connection(
                    stream,
                    peer,
                    place,
                    app.clone(),
                    tls.clone(),
                    timeout,
                    shutdown.clone(),
                    hub.clone(),
                );
                tracker.spawn(connection.instrument(span));
            }
            Err(refusal) => {
                tracker.spawn(refuse(stream, refusal).instrument(span));
            }
        }
    }
}

fn router(state: WebState) -> Router {
    Router::new()
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
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            known_host,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// The place in the hub's limits one connection holds, taken by the
/// WebSocket it becomes (if it becomes one).
#[derive(Clone)]
struct ConnectionPlace(Arc<Mutex<Option<Reservation>>>);

impl ConnectionPlace {
    fn take(&self) -> Option<Reservation> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

/// The first byte of a TLS handshake record; no HTTP request starts with it.
const TLS_HANDSHAKE: u8 = 0x16;

/// Serves one connection: HTTPS if its first byte starts a TLS handshake
/// (and the door has a certificate), else HTTP. The first byte and the
/// handshake each come within `first_timeout`, or the connection closes.
#[allow(clippy::too_many_arguments)]
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    place: Reservation,
    app: Router,
    tls: Option<Arc<ServerTls>>,
    first_timeout: Duration,
    shutdown: CancellationToken,
    hub: Hub,
) {
    let Some(tls) = tls else {
        return serve_http(stream, peer, place, app, first_timeout, shutdown).await;
    };
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        _ = shutdown.cancelled() => return,
        peeked = timeout(first_timeout, stream.peek(&mut first)) => peeked,
    };
    match peeked {
        Ok(Ok(1..)) if first[0] == TLS_HANDSHAKE => {}
        Ok(Ok(1..)) => return serve_http(stream, peer, place, app, first_timeout, shutdown).await,
        // Closed, broken, or silent: nothing to serve.
        _ => return,
    }
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return,
        handshake = timeout(first_timeout, tls.web_acceptor().accept(stream)) => handshake,
    };
    match handshake {
        Ok(Ok(stream)) => serve_http(stream, peer, place, app, first_timeout, shutdown).await,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            hub.metrics().tls_handshake_failed("error");
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            hub.metrics().tls_handshake_failed("timeout");
        }
    }
}

/// Serves one HTTP connection: requests until it goes quiet for the
/// handshake timeout (a half-sent request is closed then), or has served plain HTTP for [`HTTP_LIFETIME`],
/// or becomes a WebSocket. Its place in the limits is given back when it
/// ends, unless a WebSocket took it.
async fn serve_http(
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    peer: SocketAddr,
    place: Reservation,
    app: Router,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let place = ConnectionPlace(Arc::new(Mutex::new(Some(place))));
    let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(place.clone());
        app.clone().call(request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => Some(served),
        _ = shutdown.cancelled() => None,
        _ = tokio::time::sleep(HTTP_LIFETIME) => None,
    };
    let served = match served {
        Some(served) => served,
        None => {
            connection.as_mut().graceful_shutdown();
            match timeout(HTTP_CLOSE_GRACE, connection).await {
                Ok(served) => served,
                Err(_) => return,
            }
        }
    };
    if let Err(error) = served {
        tracing::debug!(%error, "HTTP connection ended");
    }
}

/// Tells a connection past the limits why, as an HTTP answer, and closes.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    tracing::info!(%refusal, "refused");
    let answer = http_refusal(&refusal);
    let _ = timeout(REFUSAL_LINGER, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the request brought, so the close is not a reset that
        // destroys the answer before the browser reads it.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}

/// A refusal as a whole HTTP answer, sent before the request is read.
fn http_refusal(refusal: &Refusal) -> String {
    let body = format!("{refusal}\n");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: 10\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
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

/// Refuses a request naming a host this server does not answer to.
async fn known_host(State(state): State<WebState>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|value| value.to_str().unwrap_or("?"));
    if state.access.answers(host) {
        return next.run(request).await;
    }
    let host = host.unwrap_or_default();
    tracing::warn!(host, "request for an unknown host refused");
    let message = format!(
        "this server does not answer to the name {host:?}; \
         its operator can allow it with --web-host\n"
    );
    (StatusCode::MISDIRECTED_REQUEST, message).into_response()
}

async fn upgrade(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(place): Extension<ConnectionPlace>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !state.access.allows_origin(&headers) {
        tracing::warn!(%peer, origin = ?headers.get(header::ORIGIN), "cross-origin WebSocket refused");
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused\n").into_response();
    }
    // The connection's place becomes the member's; a second upgrade on one
    // connection (which HTTP does not allow) would need a place of its own.
    let place = match place.take() {
        Some(place) => Ok(place),
        None => state.hub.reserve(Some(peer.ip())),
    };
    let span = tracing::info_span!("web", %peer);
    let tracker = state.tracker.clone();
    let max_frame = json_frame_limit(state.limits.max_line).max(MIN_FRAME);
    // Frames are capped as messages are: a frame is buffered whole, so
    // without its own cap an unfinished one could hold up to the
    // library's 16 MiB per connection.
    upgrade
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .on_upgrade(move |socket| {
            let wire = WebSocketWire::new(socket, state.limits.max_line);
            let member = serve_member(wire, state.hub, DoorKind::Web, place, state.limits);
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
    /// The close frame to end with, when the peer broke the protocol.
    close_frame: Option<CloseFrame>,
}

impl WebSocketWire {
    fn new(socket: WebSocket, max_line: usize) -> Self {
        WebSocketWire {
            socket,
            max_line,
            received: None,
            outgoing: std::collections::VecDeque::new(),
            frames_taken: 0,
            close_frame: None,
        }
    }

    /// What a read error means: a protocol violation ends the session
    /// with the close code RFC 6455 gives it (1002 a forbidden frame, 1007
    /// text that is not UTF-8, 1009 a frame over the cap); anything else
    /// is a broken connection.
    fn read_failed(&mut self, error: axum::Error) -> io::Result<Input> {
        let inner = error.into_inner();
        let violation = match inner.downcast_ref::<tungstenite::Error>() {
            Some(tungstenite::Error::Capacity(_)) => Violation::TooBig,
            Some(tungstenite::Error::Utf8(_)) => Violation::Utf8,
            Some(tungstenite::Error::Protocol(protocol))
                if !matches!(
                    protocol,
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
                ) =>
            {
                Violation::Frame
            }
            _ => return Err(io_error(inner)),
        };
        let (code, reason) = match violation {
            Violation::Frame => (1002, "protocol error"),
            Violation::Utf8 => (1007, "text frame not UTF-8"),
            Violation::TooBig => (1009, "frame too big"),
        };
        self.close_frame = Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        });
        Ok(Input::Reject(DropReason::Violation(violation)))
    }
}

/// A WebSocket error as an I/O error of the same kind (a peer the kernel
/// found gone is `TimedOut`, as on TCP).
fn io_error(error: Box<dyn std::error::Error + Send + Sync>) -> io::Error {
    match error.downcast::<tungstenite::Error>() {
        Ok(error) => match *error {
            tungstenite::Error::Io(error) => error,
            other => io::Error::other(other),
        },
        Err(other) => io::Error::other(other),
    }
}

/// What one WebSocket text frame asks for: a JSON command whose text is
/// within `max_line`, or the refusal to send back.
fn frame_input(text: &str, max_line: usize) -> Input {
    match serde_json::from_str::<ClientCommand>(text) {
        Ok(command) => match text_too_long(&command, max_line) {
            Some(refusal) => Input::Refused(refusal),
            None => Input::Command(command),
        },
        Err(_) if serde_json::from_str::<ModeSwitch>(text).is_ok() => Input::Refused(
            ServerEvent::error(ErrorCode::Usage, "the web door speaks JSON only"),
        ),
        Err(error) => {
            let message = format!("not a command object: {error}");
            Input::Refused(ServerEvent::error(ErrorCode::BadJson, message))
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
                Some(Ok(Message::Text(text))) => frame_input(text.as_str(), self.max_line),
                Some(Ok(Message::Binary(_))) => Input::Refused(ServerEvent::error(
                    ErrorCode::BadJson,
                    "send JSON commands as text frames",
                )),
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                // The tab closed or navigated away: a goodbye.
                Some(Ok(Message::Close(_))) | None => return Ok(false),
                Some(Err(error)) => self.read_failed(error)?,
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
                .map_err(|error| io_error(error.into_inner()))?;
            self.outgoing.pop_front();
            self.frames_taken += 1;
        }
        self.socket
            .flush()
            .await
            .map_err(|error| io_error(error.into_inner()))
    }

    async fn close(&mut self) -> io::Result<()> {
        match self.close_frame.take() {
            Some(frame) => self
                .socket
                .send(Message::Close(Some(frame)))
                .await
                .map_err(io::Error::other),
            None => self.socket.close().await.map_err(io::Error::other),
        }
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
        let none = WebAccess::default();
        let extra = WebAccess::new(Vec::new(), vec!["https://chat.example".to_string()]);
        assert!(none.allows_origin(&headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080")));
        assert!(none.allows_origin(&headers(None, "127.0.0.1:8080")));
        assert!(!none.allows_origin(&headers(Some("http://evil.example"), "127.0.0.1:8080")));
        assert!(!none.allows_origin(&headers(Some("http://127.0.0.1:9999"), "127.0.0.1:8080")));
        assert!(extra.allows_origin(&headers(Some("https://chat.example"), "127.0.0.1:8080")));
    }

    #[test]
    fn hosts_answered_are_addresses_localhost_and_names_given() {
        let access = WebAccess::new(
            vec!["Chat.Example.org".into()],
            vec!["https://school.example:8443".into()],
        );
        for host in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "192.0.2.7",
            "localhost:8080",
            "LOCALHOST.",
            "chat.example.org",
            "chat.example.org.:80",
            "school.example",
        ] {
            assert!(access.answers(Some(host)), "{host}");
        }
        assert!(access.answers(None), "no Host: not a browser");
        // A rebound name: the attacker's own domain, pointed at us.
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!access.answers(Some(host)), "{host}");
        }
        let machine = gethostname::gethostname().to_string_lossy().to_lowercase();
        if !machine.is_empty() {
            assert!(access.answers(Some(&format!("{machine}:8080"))));
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::protocol::arbitrary::{client_command, typed_text};

        proptest! {
            /// Any text frame is a command within the limit or a refusal,
            /// never a panic.
            #[test]
            fn any_text_frame_is_a_command_within_the_limit_or_refused(
                max_line in 1usize..64,
                text in prop_oneof![typed_text(), "\\{\"type\":\"[a-z]{1,6}\"[a-z,:\"{}]{0,30}"],
            ) {
                match frame_input(&text, max_line) {
                    Input::Command(command) => prop_assert!(command.text_len() <= max_line),
                    Input::Refused(ServerEvent::Error { .. }) => {}
                    other => prop_assert!(false, "{:?}", other),
                }
            }

            /// A command sent as a frame is read back as sent, or refused
            /// as too long when its text is over the limit.
            #[test]
            fn frames_decode_as_encoded(max_line in 1usize..64, command in client_command()) {
                let frame = serde_json::to_string(&command).unwrap();
                let input = frame_input(&frame, max_line);
                if command.text_len() <= max_line {
                    prop_assert_eq!(input, Input::Command(command));
                } else {
                    let refused = matches!(
                        input,
                        Input::Refused(ServerEvent::Error { code: ErrorCode::LineTooLong, .. })
                    );
                    prop_assert!(refused);
                }
            }
        }
    }
}
