//! The TLS door: the TCP door's text and JSON lines inside TLS, for
//! `openssl s_client`, `ncat --ssl` and `sockchat connect --tls`.
//!
//! The handshake runs in the connection's own task, under the handshake
//! timeout, so a peer that stalls it holds nothing but its own place (in
//! the per-address and total limits, as any connection does) and never
//! the accept loop. Once it is done, the connection is a member like one
//! from the TCP door: same codec, same driver, same limits.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::server::TlsStream;
use tracing::Instrument;

use super::driver::serve_member;
use super::listener::{accept_failed, accept_or_stop, listen, watch_liveness};
use super::stream::StreamWire;
use super::tcp::LineWireCodec;
use super::{Door, DoorContext};
use crate::hub::{DoorKind, Refusal};
use crate::tls::ServerTls;

/// How long a connection whose handshake failed is read (and what it
/// sends dropped) after our side is closed, so that the close is a clean
/// one and not a reset.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The TLS door, bound.
#[derive(Debug)]
pub struct TlsDoor {
    listener: TcpListener,
    tls: Arc<ServerTls>,
}

impl TlsDoor {
    /// Binds the door to `addr`, serving the certificate `tls` holds.
    pub fn bind(addr: SocketAddr, tls: Arc<ServerTls>) -> io::Result<Self> {
        Ok(TlsDoor {
            listener: listen(addr)?,
            tls,
        })
    }
}

impl Door for TlsDoor {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// With the certificate's fingerprint, for checking it out of band:
    /// `listening tls 127.0.0.1:8889 sha256:...`.
    fn listening_lines(&self) -> Vec<String> {
        self.local_addr()
            .map(|addr| format!("listening tls {addr} {}", self.tls.fingerprint()))
            .into_iter()
            .collect()
    }

    fn serve(self: Box<Self>, context: DoorContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(accept_loop(self.listener, self.tls, context))
    }
}

/// Accepts connections until shutdown; each handshakes in its own task.
async fn accept_loop(listener: TcpListener, tls: Arc<ServerTls>, context: DoorContext) {
    while let Some(accepted) = accept_or_stop(&listener, &context.shutdown).await {
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors: there is no TLS to say it in, so the
                // waiting connections are closed (a TLS client reports
                // the connection closed).
                accept_failed(&listener, &error, &context.spare, b"").await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        watch_liveness(&stream, context.limits.liveness);
        let span = tracing::info_span!("tls", %peer);
        let connection = handshake_then_serve(stream, peer, tls.clone(), context.clone());
        context.tracker.spawn(connection.instrument(span));
    }
}

/// Shakes hands (within the handshake timeout), then serves the member.
async fn handshake_then_serve(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Arc<ServerTls>,
    context: DoorContext,
) {
    // The place is held from accept on, so handshakes count against the
    // per-address limit: one address cannot stall more than its share.
    let place = context.hub.reserve(Some(peer.ip()));
    if let Err(Refusal::TooManyFromAddress(_)) = &place {
        // Its share is taken; a handshake would only be more work for
        // something it already holds too many of.
        tracing::info!("refused before the handshake: too many from this address");
        close_gently(stream).await;
        return;
    }
    let Some(stream) = shake_hands(stream, &tls, &context).await else {
        return;
    };
    let codec = LineWireCodec::new(context.limits.max_line);
    let wire = StreamWire::new(stream, codec, context.limits.partial_line_flush);
    serve_member(wire, context.hub, DoorKind::Tls, place, context.limits).await;
}

/// Shakes hands within the handshake timeout: the stream inside TLS, or
/// `None` when the handshake failed (the connection is closed gently),
/// timed out, or the server is stopping. Counted in the metrics.
pub(crate) async fn shake_hands(
    stream: TcpStream,
    tls: &ServerTls,
    context: &DoorContext,
) -> Option<TlsStream<TcpStream>> {
    let handshake = tls.text_acceptor().accept(stream).into_fallible();
    let limit = context.limits.handshake_timeout;
    tokio::select! {
        _ = context.shutdown.cancelled() => None,
        done = timeout(limit, handshake) => match done {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err((error, stream))) => {
                tracing::debug!(%error, "TLS handshake failed");
                context.hub.metrics().tls_handshake_failed("error");
                close_gently(stream).await;
                None
            }
            Err(_) => {
                tracing::debug!(secs = limit.as_secs(), "TLS handshake timed out");
                context.hub.metrics().tls_handshake_failed("timeout");
                None
            }
        },
    }
}

/// Closes a connection that is not (or not yet) TLS: our side first, then
/// what it still sends is read and dropped for a moment, so it sees an
/// orderly close rather than a reset.
async fn close_gently(mut stream: TcpStream) {
    let _ = timeout(CLOSE_LINGER, async {
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}
