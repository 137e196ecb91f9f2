//! The TCP door: text lines for `nc`, telnet and ten-line socket clients,
//! JSON lines for our own client (after `/json`). The listener, and the
//! codec for both line formats; the driver does the rest.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use bytes::BytesMut;
use tokio::net::TcpListener;
use tokio_util::codec::Decoder;
use tracing::Instrument;

use super::driver::serve_member;
use super::listener::{accept_failed, accept_or_stop, watch_liveness};
use super::stream::{StreamCodec, StreamWire};
use super::{Door, DoorContext};
use crate::hub::{DoorKind, Refusal};
use crate::protocol::command::{ModeSwitch, JSON_SWITCH};
use crate::protocol::line_codec::{Frame, LineCodec};
use crate::protocol::{
    parse_line, ClientCommand, DropReason, ErrorCode, NotChat, Outgoing, ParseError, ServerEvent,
    WireMode,
};
use crate::session::limits::{json_frame_limit, text_too_long};
use crate::session::Input;

/// The TCP door, bound.
#[derive(Debug)]
pub struct TcpDoor {
    listener: TcpListener,
    /// Where TLS is served, for whoever starts a TLS handshake here.
    tls_at: Option<SocketAddr>,
    /// Where IRC is served, for an IRC client that came here.
    irc_at: Option<SocketAddr>,
}

impl TcpDoor {
    /// Binds the door to `addr`.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(TcpDoor {
            listener: super::listener::listen(addr)?,
            tls_at: None,
            irc_at: None,
        })
    }

    /// Tells TLS clients that come here that TLS is served at `addr`.
    pub fn with_tls_at(mut self, addr: Option<SocketAddr>) -> Self {
        self.tls_at = addr;
        self
    }

    /// Tells IRC clients that come here that IRC is served at `addr`.
    pub fn with_irc_at(mut self, addr: Option<SocketAddr>) -> Self {
        self.irc_at = addr;
        self
    }
}

impl Door for TcpDoor {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    fn serve(self: Box<Self>, context: DoorContext) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let elsewhere = Elsewhere {
            tls: self.tls_at,
            irc: self.irc_at,
        };
        Box::pin(accept_loop(self.listener, elsewhere, context))
    }
}

/// Accepts connections until shutdown, one tracked task each.
/// Where the other stream protocols are served, for clients that came to
/// the text port speaking one of them.
#[derive(Debug, Clone, Copy)]
struct Elsewhere {
    tls: Option<SocketAddr>,
    irc: Option<SocketAddr>,
}

async fn accept_loop(listener: TcpListener, elsewhere: Elsewhere, context: DoorContext) {
    while let Some(accepted) = accept_or_stop(&listener, &context.shutdown).await {
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                let full = Refusal::ServerFull(context.hub.member_count()).to_event();
                let full = Outgoing::new(full);
                let full = full.encoded(WireMode::Text);
                accept_failed(&listener, &error, &context.spare, full).await;
                continue;
            }
        };
        // Chat lines are small and latency matters more than packet
        // count; batching is done by draining the outbox instead.
        let _ = stream.set_nodelay(true);
        watch_liveness(&stream, context.limits.liveness);
        let place = context.hub.reserve(Some(peer.ip()));
        let codec = LineWireCodec::new(context.limits.max_line)
            .with_tls_at(elsewhere.tls)
            .with_irc_at(elsewhere.irc);
        let wire = StreamWire::new(stream, codec, context.limits.partial_line_flush);
        let span = tracing::info_span!("tcp", %peer);
        let member = serve_member(
            wire,
            context.hub.clone(),
            DoorKind::Tcp,
            place,
            context.limits.clone(),
        );
        context.tracker.spawn(member.instrument(span));
    }
}

/// Text lines, or JSON lines after the switch, in both directions.
///
/// Input switches mode as soon as the switch is read (the next line is in
/// the new mode); output switches when the `mode` event is encoded, so
/// every line before it is in the old mode and every line after it in the
/// new one, even with events already queued.
#[derive(Debug)]
pub struct LineWireCodec {
    lines: LineCodec,
    max_line: usize,
    input_mode: WireMode,
    output_mode: WireMode,
    /// The first input is still to come: it is checked for not being chat
    /// at all (HTTP, TLS, binary).
    first: bool,
    /// Where TLS is served, to tell a TLS client that came here instead.
    tls_at: Option<SocketAddr>,
    /// Where IRC is served, to tell an IRC client that came here instead.
    irc_at: Option<SocketAddr>,
    /// The client opened with IRC registration: its goodbye is an IRC
    /// `ERROR` line, which it shows.
    speaks_irc: bool,
}

impl LineWireCodec {
    /// A codec for lines of at most `max_line` bytes (0: no limit).
    pub fn new(max_line: usize) -> Self {
        LineWireCodec {
            lines: LineCodec::new(line_limit(max_line, WireMode::Text)),
            max_line,
            input_mode: WireMode::Text,
            output_mode: WireMode::Text,
            first: true,
            tls_at: None,
            irc_at: None,
            speaks_irc: false,
        }
    }

    /// Names `addr` to a TLS client: "TLS is at ...".
    pub fn with_tls_at(mut self, addr: Option<SocketAddr>) -> Self {
        self.tls_at = addr;
        self
    }

    /// Names `addr` to an IRC client: "IRC is at ...".
    pub fn with_irc_at(mut self, addr: Option<SocketAddr>) -> Self {
        self.irc_at = addr;
        self
    }

    fn input(&mut self, frame: Frame) -> Input {
        if std::mem::take(&mut self.first) {
            if let Some(what) = not_chat(&frame) {
                return Input::Reject(DropReason::NotChat(what));
            }
            if matches!(&frame, Frame::Line(line) if is_irc_registration(line)) {
                self.speaks_irc = true;
                let at = self.irc_at;
                return Input::Reject(DropReason::NotChat(NotChat::Irc { at }));
            }
        }
        let line = match frame {
            Frame::Line(line) => line,
            Frame::TooLong => {
                let message = match self.input_mode {
                    WireMode::Text => {
                        format!("line longer than {} bytes; it was dropped", self.max_line)
                    }
                    WireMode::Json => format!(
                        "JSON line longer than {} bytes; it was dropped",
                        line_limit(self.max_line, WireMode::Json)
                    ),
                };
                return Input::Refused(ServerEvent::error(ErrorCode::LineTooLong, message));
            }
            Frame::InvalidUtf8 => {
                let message = "line is not valid UTF-8; it was dropped";
                return Input::Refused(ServerEvent::error(ErrorCode::InvalidUtf8, message));
            }
        };
        match self.input_mode {
            WireMode::Text if line.trim().eq_ignore_ascii_case(JSON_SWITCH) => {
                self.switch(WireMode::Json)
            }
            WireMode::Text => match parse_line(&line) {
                Ok(Some(command)) => Input::Command(command),
                Ok(None) => Input::Nothing,
                Err(error) => Input::Refused(parse_error(&error)),
            },
            WireMode::Json if line.trim().is_empty() => Input::Nothing,
            WireMode::Json => match serde_json::from_str::<ClientCommand>(&line) {
                Ok(command) => match text_too_long(&command, self.max_line) {
                    Some(refusal) => Input::Refused(refusal),
                    None => Input::Command(command),
                },
                Err(error) => match serde_json::from_str::<ModeSwitch>(&line) {
                    Ok(switch) => self.switch(switch.mode),
                    Err(_) => {
                        let message = format!("not a command object: {error}");
                        Input::Refused(ServerEvent::error(ErrorCode::BadJson, message))
                    }
                },
            },
        }
    }

    fn switch(&mut self, mode: WireMode) -> Input {
        self.input_mode = mode;
        self.lines.set_max_len(line_limit(self.max_line, mode));
        Input::SwitchMode(mode)
    }
}

/// The longest line read in `mode`: `max_line` itself for text; for JSON,
/// room for a command whose text is `max_line` bytes, escapes and all
/// (the text is checked once parsed). 0 is no limit.
fn line_limit(max_line: usize, mode: WireMode) -> usize {
    match (max_line, mode) {
        (0, _) => usize::MAX,
        (max, WireMode::Text) => max,
        (max, WireMode::Json) => json_frame_limit(max),
    }
}

/// The error event for a line the text parser refused.
pub(crate) fn parse_error(error: &ParseError) -> ServerEvent {
    let code = match error {
        ParseError::UnknownCommand(_) => ErrorCode::UnknownCommand,
        ParseError::Usage(_) => ErrorCode::Usage,
    };
    ServerEvent::error(code, error.to_string())
}

/// Whether a first line is an IRC client registering: `CAP LS`, `PASS`,
/// `NICK` or `USER` in the form clients send (a person on `nc` types
/// `/nick`).
fn is_irc_registration(line: &str) -> bool {
    let Some(message) = crate::protocol::irc::parse(line.trim_end_matches('\r')) else {
        return false;
    };
    let params = message.params.len();
    match message.verb {
        "CAP" => message.params.first().is_some_and(|sub| *sub == "LS"),
        "PASS" | "NICK" => params == 1 && !message.params[0].contains(' '),
        "USER" => params == 4,
        _ => false,
    }
}

/// What a connection's first line says it is, when it is not a chat
/// client: an HTTP request line or header (a web page's `fetch()` can post
/// to any localhost port; Ergo and Redis refuse these the same way), or
/// bytes that are not text.
pub(crate) fn not_chat(frame: &Frame) -> Option<NotChat> {
    let line = match frame {
        Frame::Line(line) => line,
        Frame::InvalidUtf8 => return Some(NotChat::Binary),
        Frame::TooLong => return None,
    };
    let is_http = {
        let mut words = line.trim_end().split(' ');
        let method = words.next().unwrap_or_default();
        let version = line.trim_end().rsplit(' ').next().unwrap_or_default();
        (method.len() >= 3
            && method.bytes().all(|byte| byte.is_ascii_uppercase())
            && version.starts_with("HTTP/"))
            || line
                .get(..5)
                .is_some_and(|start| start.eq_ignore_ascii_case("host:"))
    };
    if is_http {
        return Some(NotChat::Http);
    }
    // C0 control bytes nobody types: a terminal's tab, backspace and
    // escape sequences (arrow keys) are text; NUL and the rest are not.
    line.trim_end_matches('\r')
        .chars()
        .any(|c| c < ' ' && !matches!(c, '\t' | '\u{8}' | '\u{1b}'))
        .then_some(NotChat::Binary)
}

impl StreamCodec for LineWireCodec {
    fn decode(&mut self, buf: &mut BytesMut) -> Option<Input> {
        // A TLS handshake (or SSLv2's) starts with a byte no text does, and
        // may never bring a newline: refused from its first byte.
        if self.first && matches!(buf.first(), Some(0x16 | 0x80)) {
            self.first = false;
            buf.clear();
            let at = self.tls_at;
            return Some(Input::Reject(DropReason::NotChat(NotChat::Tls { at })));
        }
        // Decoding never fails; the io::Error type is the trait's.
        let frame = self.lines.decode(buf).ok().flatten()?;
        Some(self.input(frame))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Option<Input> {
        let frame = self.lines.decode_eof(buf).ok().flatten()?;
        Some(self.input(frame))
    }

    fn decode_partial(&mut self, buf: &mut BytesMut) -> Option<Input> {
        let frame = self.lines.take_partial(buf)?;
        Some(self.input(frame))
    }

    fn encode(&mut self, event: &Outgoing, out: &mut BytesMut) {
        if let ServerEvent::Mode { mode } = event.event() {
            self.output_mode = *mode;
        }
        if let (true, ServerEvent::Bye { reason, .. }) = (self.speaks_irc, event.event()) {
            let mut line = String::new();
            crate::protocol::irc::write_line(&mut line, None, "ERROR", &[reason], true);
            out.extend_from_slice(line.as_bytes());
            return;
        }
        out.extend_from_slice(event.encoded(self.output_mode));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LineWireCodec, bytes: &[u8]) -> Vec<Input> {
        let mut buf = BytesMut::from(bytes);
        std::iter::from_fn(|| codec.decode(&mut buf)).collect()
    }

    #[test]
    fn the_switch_applies_to_the_very_next_line() {
        let mut codec = LineWireCodec::new(100);
        let inputs = decode_all(&mut codec, b"hi\n/json\n{\"type\":\"rooms\"}\n");
        assert_eq!(
            inputs,
            vec![
                Input::Command(ClientCommand::Say {
                    text: "hi".into(),
                    room: None
                }),
                Input::SwitchMode(WireMode::Json),
                Input::Command(ClientCommand::Rooms),
            ]
        );
        let back = decode_all(
            &mut codec,
            b"{\"type\":\"mode\",\"mode\":\"text\"}\n/rooms\n",
        );
        assert_eq!(
            back,
            vec![
                Input::SwitchMode(WireMode::Text),
                Input::Command(ClientCommand::Rooms)
            ]
        );
    }

    #[test]
    fn bad_lines_become_errors_in_turn() {
        let mut codec = LineWireCodec::new(4);
        let inputs = decode_all(&mut codec, b"toolong\n\xff\n/no\n\n");
        let codes: Vec<_> = inputs
            .iter()
            .map(|input| match input {
                Input::Refused(ServerEvent::Error { code, .. }) => Some(*code),
                _ => None,
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                Some(ErrorCode::LineTooLong),
                Some(ErrorCode::InvalidUtf8),
                Some(ErrorCode::UnknownCommand),
                None
            ]
        );
        assert_eq!(inputs[3], Input::Nothing);
    }

    #[test]
    fn output_switches_at_the_mode_event() {
        let mut codec = LineWireCodec::new(100);
        let mut out = BytesMut::new();
        let notice = Outgoing::new(ServerEvent::Notice { text: "a".into() });
        codec.encode(&notice, &mut out);
        codec.encode(
            &Outgoing::new(ServerEvent::Mode {
                mode: WireMode::Json,
            }),
            &mut out,
        );
        codec.encode(&notice, &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(
            text,
            "* a\n{\"type\":\"mode\",\"mode\":\"json\"}\n{\"type\":\"notice\",\"text\":\"a\"}\n"
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;
        use crate::protocol::arbitrary::{client_command, hostile_bytes};

        proptest! {
            /// Whatever a peer sends, in whatever pieces: no panic, only
            /// the first input can reject the connection, and no command
            /// carries more text than `--max-line`, in either mode.
            #[test]
            fn hostile_bytes_stay_within_the_limits(
                max_line in 1usize..64,
                bytes in hostile_bytes(600),
                piece in 1usize..50,
            ) {
                let mut codec = LineWireCodec::new(max_line);
                let mut buf = BytesMut::new();
                let mut inputs = Vec::new();
                for chunk in bytes.chunks(piece) {
                    buf.extend_from_slice(chunk);
                    inputs.extend(std::iter::from_fn(|| codec.decode(&mut buf)));
                    prop_assert!(buf.len() <= json_frame_limit(max_line) + 1);
                }
                inputs.extend(codec.decode_eof(&mut buf));
                for (at, input) in inputs.iter().enumerate() {
                    match input {
                        Input::Reject(_) => prop_assert_eq!(at, 0),
                        Input::Command(command) => {
                            prop_assert!(command.text_len() <= max_line, "{:?}", command)
                        }
                        _ => {}
                    }
                }
            }

            /// A command sent as a JSON line is read back as sent, or
            /// refused as too long when its text is over the limit. (A
            /// limit shorter than `/json` cannot carry the switch itself.)
            #[test]
            fn json_lines_decode_as_encoded(
                max_line in prop_oneof![Just(0), JSON_SWITCH.len()..64],
                command in client_command(),
            ) {
                let mut codec = LineWireCodec::new(max_line);
                let line = format!("/json\n{}\n", serde_json::to_string(&command).unwrap());
                let inputs = decode_all(&mut codec, line.as_bytes());
                prop_assert_eq!(&inputs[0], &Input::SwitchMode(WireMode::Json));
                prop_assert_eq!(inputs.len(), 2);
                if max_line == 0 || command.text_len() <= max_line {
                    prop_assert_eq!(&inputs[1], &Input::Command(command));
                } else {
                    let refused = matches!(
                        &inputs[1],
                        Input::Refused(ServerEvent::Error { code: ErrorCode::LineTooLong, .. })
                    );
                    prop_assert!(refused, "{:?}", inputs[1]);
                }
            }
        }
    }
}
