//! The web door: the browser client (B/S next to the C/S doors). One
//! listener serves the page (embedded in the binary: no CDN, no internet),
//! a WebSocket endpoint speaking the JSON schema of the TCP door's JSON
//! mode, `/healthz` and `/metrics`.
//!
//! The WebSocket handshake checks `Origin`: a page on another site cannot
//! open a chat session with a visitor's browser (cross-site WebSocket
//! hijacking). Every response carries a Content-Security-Policy that lets
//! the page run only its own script.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::SinkExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::throttle::{Throttle, Verdict};
use super::{disconnect_flooder, wait_dropped, ConnectionLimits, MAX_IN_FLIGHT};
use crate::hub::{Door, Flow, Hub, MemberId, Pending};
use crate::protocol::{ClientCommand, ErrorCode, LeaveReason, Outgoing, ServerEvent, WireMode};

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const APP_CSS: &str = include_str!("../../web/app.css");

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

/// Events sent per flush.
const WRITE_BATCH: usize = 128;

/// How long a command waits for an earlier one's answer (see the TCP door).
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// How long the last words to a departing browser may take.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);

/// What every request handler shares.
#[derive(Clone)]
struct WebState {
    hub: Hub,
    limits: Arc<ConnectionLimits>,
    /// Origins allowed besides the page's own.
    extra_origins: Arc<Vec<String>>,
    tracker: TaskTracker,
}

/// Serves HTTP and WebSocket clients until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    limits: ConnectionLimits,
    extra_origins: Vec<String>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let state = WebState {
        hub,
        limits: Arc::new(limits),
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
    upgrade
        .max_message_size(MAX_FRAME)
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .on_upgrade(move |socket| {
            tracker.track_future(run_socket(socket, peer, state.hub, state.limits).instrument(span))
        })
}

/// Why a browser session ended.
enum Ending {
    Quit,
    Lost(String),
    Dropped(String),
    Flood,
}

struct WebSession {
    socket: WebSocket,
    hub: Hub,
    id: MemberId,
    limits: Arc<ConnectionLimits>,
    outbox: mpsc::Receiver<Arc<Outgoing>>,
    dropped: Option<oneshot::Receiver<String>>,
    throttle: Option<Throttle>,
    /// The answer an earlier command is still waiting for.
    awaiting: Option<Pending>,
    /// Ids of this member's messages not yet echoed, oldest first; at
    /// `MAX_IN_FLIGHT` the socket is not read until some come back.
    echoes_in_flight: VecDeque<u64>,
    batch: Vec<Arc<Outgoing>>,
}

async fn run_socket(
    mut socket: WebSocket,
    peer: SocketAddr,
    hub: Hub,
    limits: Arc<ConnectionLimits>,
) {
    let session = match hub.connect(Door::Web, Some(peer.ip())) {
        Ok(session) => session,
        Err(refusal) => {
            tracing::info!(%refusal, "web client refused");
            let _ = socket
                .send(text_frame(&Outgoing::new(refusal.to_event())))
                .await;
            let _ = socket.close().await;
            return;
        }
    };
    let mut session = WebSession {
        socket,
        hub,
        id: session.id,
        throttle: Throttle::new(limits.max_rate, Instant::now().into_std()),
        limits,
        outbox: session.outbox,
        dropped: Some(session.dropped),
        awaiting: None,
        echoes_in_flight: VecDeque::new(),
        batch: Vec::new(),
    };
    let ending = session.run().await;
    session.finish(ending).await;
}

/// An event as one WebSocket text frame: its cached JSON, shared, not
/// re-encoded.
fn text_frame(event: &Outgoing) -> Message {
    let line = event.encoded(WireMode::Json);
    let json = line.slice(..line.len() - 1);
    // The JSON encoding is valid UTF-8 by construction.
    Message::Text(Utf8Bytes::try_from(json).expect("JSON is UTF-8"))
}

impl WebSession {
    async fn run(&mut self) -> Ending {
        loop {
            let full = self.echoes_in_flight.len() >= MAX_IN_FLIGHT;
            tokio::select! {
                // The history writer is stuck; do not hold the member hostage.
                _ = tokio::time::sleep(ANSWER_WAIT), if full => {
                    tracing::warn!("echoes did not come in time; reading on");
                    self.echoes_in_flight.clear();
                }
                reason = wait_dropped(&mut self.dropped) => return Ending::Dropped(reason),
                count = self.outbox.recv_many(&mut self.batch, WRITE_BATCH) => {
                    if count == 0 {
                        return Ending::Dropped(String::new());
                    }
                    if let Err(ending) = self.send_batch().await {
                        return ending;
                    }
                }
                message = self.socket.recv(), if !full => match message {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(ending) = self.on_text(text.as_str()).await {
                            return ending;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let error = ServerEvent::error(ErrorCode::BadJson, "send JSON commands as text frames");
                        self.hub.notify(self.id, error);
                    }
                    // Pings are answered by the WebSocket layer itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    // The tab closed or navigated away: a goodbye.
                    Some(Ok(Message::Close(_))) | None => {
                        self.hub.handle(self.id, ClientCommand::Quit { reason: None });
                        return Ending::Quit;
                    }
                    Some(Err(error)) => return Ending::Lost(error.to_string()),
                },
            }
        }
    }

    /// Sends what is in `batch`, one frame per event, flushed once.
    async fn send_batch(&mut self) -> Result<(), Ending> {
        for event in self.batch.drain(..) {
            if self
                .awaiting
                .is_some_and(|pending| pending.is_met_by(event.event()))
            {
                self.awaiting = None;
            }
            if let ServerEvent::Message(message) = event.event() {
                if self.echoes_in_flight.front() == Some(&message.id) {
                    self.echoes_in_flight.pop_front();
                }
            }
            let sent = tokio::select! {
                sent = self.socket.feed(text_frame(&event)) => sent,
                reason = wait_dropped(&mut self.dropped) => return Err(Ending::Dropped(reason)),
            };
            sent.map_err(|error| Ending::Lost(error.to_string()))?;
        }
        tokio::select! {
            flushed = self.socket.flush() => flushed.map_err(|error| Ending::Lost(error.to_string())),
            reason = wait_dropped(&mut self.dropped) => Err(Ending::Dropped(reason)),
        }
    }

    async fn on_text(&mut self, text: &str) -> Option<Ending> {
        let verdict = match &mut self.throttle {
            Some(throttle) => throttle.check(Instant::now().into_std()),
            None => Verdict::Now,
        };
        match verdict {
            Verdict::Now => {}
            Verdict::After(_) => {
                let message = self.limits.over_rate();
                self.hub
                    .notify(self.id, ServerEvent::error(ErrorCode::Flood, message));
                return None;
            }
            Verdict::Flood => return Some(Ending::Flood),
        }
        let max = self.limits.max_line;
        if max > 0 && text.len() > max {
            let message = format!("message longer than {max} bytes; it was dropped");
            self.hub
                .notify(self.id, ServerEvent::error(ErrorCode::LineTooLong, message));
            return None;
        }
        let command = match serde_json::from_str::<ClientCommand>(text) {
            Ok(ClientCommand::Mode { .. }) => {
                self.hub.notify(
                    self.id,
                    ServerEvent::error(ErrorCode::Usage, "the web door speaks JSON only"),
                );
                return None;
            }
            Ok(command) => command,
            Err(error) => {
                let message = format!("not a command object: {error}");
                self.hub
                    .notify(self.id, ServerEvent::error(ErrorCode::BadJson, message));
                return None;
            }
        };
        // As on TCP: messages may overtake a pending echo; anything else
        // waits for it, so the room sees this member's actions in order.
        let is_message = matches!(
            command,
            ClientCommand::Say { .. } | ClientCommand::Me { .. }
        );
        if self.awaiting.is_some()
            && !(is_message && matches!(self.awaiting, Some(Pending::Echo(_))))
        {
            if let Err(ending) = self.wait_for_answer().await {
                return Some(ending);
            }
        }
        let handled = self.hub.handle(self.id, command);
        if let Some(Pending::Echo(id)) = handled.pending {
            self.echoes_in_flight.push_back(id);
        }
        if handled.pending.is_some() {
            self.awaiting = handled.pending;
        }
        (handled.flow == Flow::Quit).then_some(Ending::Quit)
    }

    /// Forwards the outbox to the browser until the awaited answer has gone
    /// out (or a while has passed).
    async fn wait_for_answer(&mut self) -> Result<(), Ending> {
        let deadline = Instant::now() + ANSWER_WAIT;
        while self.awaiting.is_some() {
            match tokio::time::timeout_at(
                deadline,
                self.outbox.recv_many(&mut self.batch, WRITE_BATCH),
            )
            .await
            {
                Ok(0) => return Err(Ending::Dropped(String::new())),
                Ok(_) => self.send_batch().await?,
                Err(_) => {
                    tracing::warn!("an answer did not come in time; going on");
                    self.awaiting = None;
                }
            }
        }
        Ok(())
    }

    /// Tells the hub and the browser how the session ended, then closes.
    async fn finish(mut self, ending: Ending) {
        let farewell = match ending {
            Ending::Quit => None,
            Ending::Lost(error) => {
                tracing::info!(%error, "web connection lost");
                self.hub.disconnect(self.id, LeaveReason::Lost, None);
                return;
            }
            Ending::Dropped(reason) => Some(reason).filter(|reason| !reason.is_empty()),
            Ending::Flood => Some(disconnect_flooder(&self.hub, self.id, &self.limits)),
        };
        let last_words = async {
            while self.outbox.recv_many(&mut self.batch, WRITE_BATCH).await > 0 {
                if self.send_batch().await.is_err() {
                    return;
                }
            }
            if let Some(reason) = farewell {
                let bye = Outgoing::new(ServerEvent::Bye { reason });
                let _ = self.socket.send(text_frame(&bye)).await;
            }
            let _ = self.socket.close().await;
        };
        if timeout(FAREWELL_TIMEOUT, last_words).await.is_err() {
            tracing::debug!("farewell timed out");
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
