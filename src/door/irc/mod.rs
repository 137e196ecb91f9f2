//! The IRC door: irssi, WeeChat, HexChat and bots in the same rooms as
//! everyone else. Rooms are channels (`#lobby` is the lobby), nicks are
//! the hub's, shared with every door.
//!
//! A connection first registers ([`registration`], within the handshake
//! timeout, before it is a member); then the hub admits it by the nick it
//! chose, in no room, and the one driver serves it over a
//! [`StreamWire`] with the [`IrcCodec`]. Plain, or inside TLS (`--irc-tls`).

pub mod codec;
pub mod registration;
pub mod replies;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::codec::Decoder;
use tracing::Instrument;

use self::codec::IrcCodec;
use self::registration::{Registration, Step};
use self::replies::{IrcServer, MAX_LINE, MAX_TAGS};
use super::driver::serve_admitted;
use super::listener::{accept_failed, accept_or_stop, watch_liveness};
use super::now;
use super::stream::StreamWire;
use super::tcp::not_chat;
use super::tls::shake_hands;
use super::{Door, DoorContext};
use crate::hub::{DoorKind, Membership, Naming, Refusal, Reservation};
use crate::protocol::irc::parse;
use crate::protocol::line_codec::{Frame, LineCodec};
use crate::session::Session;
use crate::tls::ServerTls;

/// The default `--irc` address (6667, IRC's port).
pub const DEFAULT_IRC: &str = "127.0.0.1:6667";
/// The default `--irc-tls` address (6697, IRC over TLS).
pub const DEFAULT_IRC_TLS: &str = "127.0.0.1:6697";

/// How long the last words of a refused connection may take.
const FAREWELL: Duration = Duration::from_secs(2);

/// The IRC door, bound: plain, or with TLS.
pub struct IrcDoor {
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    motd: Option<String>,
}

impl IrcDoor {
    /// Binds the door to `addr`.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(IrcDoor {
            listener: super::listener::listen(addr)?,
            tls: None,
            motd: None,
        })
    }

    /// Serves IRC inside TLS with `tls`'s certificate.
    pub fn with_tls(mut self, tls: Arc<ServerTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The message of the day (none: 422).
    pub fn with_motd(mut self, motd: Option<String>) -> Self {
        self.motd = motd;
        self
    }
}

impl Door for IrcDoor {
    fn name(&self) -> &'static str {
        match self.tls {
            Some(_) => "ircs",
            None => "irc",
        }
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    fn listening_lines(&self) -> Vec<String> {
        let Some(addr) = self.local_addr() else {
            return Vec::new();
        };
        match &self.tls {
            Some(tls) => vec![format!("listening ircs {addr} {}", tls.fingerprint())],
            None => vec![format!("listening irc {addr}")],
        }
    }

    fn serve(self: Box<Self>, context: DoorContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let server = Arc::new(IrcServer::new(context.hub.server_name(), self.motd));
        Box::pin(accept_loop(self.listener, self.tls, server, context))
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    server: Arc<IrcServer>,
    context: DoorContext,
) {
    while let Some(accepted) = accept_or_stop(&listener, &context.shutdown).await {
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                let mut full = String::new();
                server.error(&mut full, "Closing Link: the server is full");
                accept_failed(&listener, &error, &context.spare, full.as_bytes()).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        watch_liveness(&stream, context.limits.liveness);
        let span = tracing::info_span!("irc", %peer);
        let connection = connect(stream, peer, tls.clone(), server.clone(), context.clone());
        context.tracker.spawn(connection.instrument(span));
    }
}

/// Holds a place, shakes hands if TLS, then registers and serves the
/// client.
async fn connect(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<ServerTls>>,
    server: Arc<IrcServer>,
    context: DoorContext,
) {
    // The place is held from accept on, as the TLS door's is: handshakes
    // and registrations count against the per-address limit.
    let place = context.hub.reserve(Some(peer.ip()));
    match tls {
        Some(tls) => {
            if let Err(Refusal::TooManyFromAddress(_)) = &place {
                tracing::info!("refused before the handshake: too many from this address");
                return;
            }
            if let Some(stream) = shake_hands(stream, &tls, &context).await {
                register_then_serve(stream, place, server, context).await;
            }
        }
        None => register_then_serve(stream, place, server, context).await,
    }
}

/// Registers the client (within the handshake timeout), has the hub admit
/// it by its nick, and serves it.
async fn register_then_serve<IO>(
    mut io: IO,
    place: Result<Reservation, Refusal>,
    server: Arc<IrcServer>,
    context: DoorContext,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut place = match place {
        Ok(place) => Some(place),
        Err(refusal) => {
            let mut out = String::new();
            server.error(&mut out, &format!("Closing Link: {refusal}"));
            let _ = timeout(FAREWELL, write_and_close(&mut io, &out)).await;
            return;
        }
    };
    let mut read = BytesMut::new();
    let registering = register(&mut io, &mut read, &server, &context, &mut place);
    let limit = context.limits.handshake_timeout;
    let registered = tokio::select! {
        _ = context.shutdown.cancelled() => return,
        done = timeout(limit, registering) => done,
    };
    let (membership, caps) = match registered {
        Ok(Some(registered)) => registered,
        Ok(None) => return,
        Err(_) => {
            let mut out = String::new();
            server.error(&mut out, "Closing Link: registration timed out");
            let _ = timeout(FAREWELL, write_and_close(&mut io, &out)).await;
            return;
        }
    };
    let codec = IrcCodec::new(server, membership.nick.clone(), caps);
    // What came after the registration is kept; the buffer it came in is
    // not (an idle member keeps no read buffer, as on every door).
    let read = match read.is_empty() {
        true => BytesMut::new(),
        false => BytesMut::from(&read[..]),
    };
    let wire = StreamWire::new(io, codec, Duration::ZERO).with_input(read);
    let limits = context.limits;
    let session = Session::for_stream(&limits, now()).with_keepalive(limits.keepalive, now());
    serve_admitted(wire, context.hub, membership, session, limits).await;
}

/// Reads and answers registration lines until the hub admits the client;
/// `None` when it quit, was refused or went away. What it sent after its
/// registration stays in `read`.
async fn register<IO>(
    io: &mut IO,
    read: &mut BytesMut,
    server: &IrcServer,
    context: &DoorContext,
    place: &mut Option<Reservation>,
) -> Option<(Membership, replies::Caps)>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut lines = LineCodec::new(MAX_LINE + MAX_TAGS);
    let mut registration = Registration::new();
    let hub = &context.hub;
    let check_nick = |nick: &str| hub.check_nick(nick);
    let mut first = true;
    loop {
        let mut out = String::new();
        let mut step = Step::Continue;
        while step == Step::Continue {
            let Ok(Some(frame)) = lines.decode(read) else {
                break;
            };
            if std::mem::take(&mut first) && not_chat(&frame).is_some() {
                server.error(&mut out, "Closing Link: this port speaks IRC");
                step = Step::Quit;
                break;
            }
            let line = match frame {
                Frame::Line(line) => line,
                Frame::TooLong => {
                    server.numeric(&mut out, "417", "*", &["Input line was too long"]);
                    continue;
                }
                Frame::InvalidUtf8 => {
                    server.say(
                        &mut out,
                        "FAIL",
                        &["*", "INVALID_UTF8", "Message rejected: not UTF-8"],
                    );
                    continue;
                }
            };
            if let Some(message) = parse(&line) {
                step = registration.handle(server, &message, &check_nick, &mut out);
            }
        }
        if step == Step::Ready {
            let name = registration.name()?;
            let reserved = place.take()?;
            match hub.connect_named(DoorKind::Irc, reserved, &name) {
                Ok(membership) => {
                    io.write_all(out.as_bytes()).await.ok()?;
                    return Some((membership, registration.caps()));
                }
                Err((Naming::Nick(refusal), back)) => {
                    *place = back;
                    registration.nick_lost(server, &refusal, &mut out);
                }
                Err((Naming::Refused(refusal), _)) => {
                    step = Step::Quit;
                    server.error(&mut out, &format!("Closing Link: {refusal}"));
                }
            }
        }
        if step == Step::Quit {
            let _ = timeout(FAREWELL, write_and_close(io, &out)).await;
            return None;
        }
        if !out.is_empty() {
            io.write_all(out.as_bytes()).await.ok()?;
            io.flush().await.ok()?;
        }
        read.reserve(1024);
        if io.read_buf(read).await.ok()? == 0 {
            return None;
        }
    }
}

async fn write_and_close<IO: AsyncWrite + Unpin>(io: &mut IO, out: &str) -> std::io::Result<()> {
    io.write_all(out.as_bytes()).await?;
    io.flush().await?;
    io.shutdown().await
}
