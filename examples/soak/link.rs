//! One JSON-speaking member on each door: a TCP connection switched to
//! JSON lines, a WebSocket, and a structured UDP client. Each sends
//! command objects and yields the server's events as JSON values.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The doors a link can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Tcp,
    Web,
    Udp,
}

impl Door {
    pub const ALL: [Door; 3] = [Door::Tcp, Door::Web, Door::Udp];

    pub fn name(self) -> &'static str {
        match self {
            Door::Tcp => "tcp",
            Door::Web => "web",
            Door::Udp => "udp",
        }
    }
}

/// Where the server listens.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
    pub web: SocketAddr,
}

/// A member's connection, whichever door it uses.
pub enum Link {
    Tcp {
        reader: BufReader<OwnedReadHalf>,
        writer: OwnedWriteHalf,
        /// A line read in part: kept here, so a read given up on (a
        /// timeout, a `select!`) loses nothing.
        pending: Vec<u8>,
    },
    Web(Box<WebSocketStream<MaybeTlsStream<TcpStream>>>),
    Udp(UdpLink),
}

/// A structured UDP session: datagram ids, the proof once asked for it,
/// and the push sequence, whose gaps are lost datagrams.
pub struct UdpLink {
    socket: UdpSocket,
    next_id: u64,
    proof: Option<String>,
    /// The last datagram sent, to send again when asked to retry.
    last: Option<Value>,
    last_push: Option<u64>,
    pub pushes_lost: u64,
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the link")
}

impl Link {
    /// Connects through `door`. The TCP link asks for JSON lines first.
    pub async fn open(door: Door, addrs: &Addrs) -> io::Result<Link> {
        match door {
            Door::Tcp => {
                let stream = TcpStream::connect(addrs.tcp).await?;
                Link::over_tcp(stream).await
            }
            Door::Web => {
                let url = format!("ws://{}/ws", addrs.web);
                let (socket, _) = tokio_tungstenite::connect_async(url)
                    .await
                    .map_err(io::Error::other)?;
                Ok(Link::Web(Box::new(socket)))
            }
            Door::Udp => {
                let socket = UdpSocket::bind("127.0.0.1:0").await?;
                socket.connect(addrs.udp).await?;
                let mut link = Link::Udp(UdpLink {
                    socket,
                    next_id: 1,
                    proof: None,
                    last: None,
                    last_push: None,
                    pushes_lost: 0,
                });
                // A first, empty datagram: answered with a retry, and the
                // retry (with proof) makes the member; its ack says so.
                // Sent again while unanswered, as after a loss.
                let Link::Udp(udp) = &mut link else {
                    unreachable!("a UDP link")
                };
                for _ in 0..10 {
                    udp.send_datagram(json!({ "id": 0 })).await?;
                    let acked = async {
                        while udp.receive().await?.is_none() {}
                        Ok::<_, io::Error>(())
                    };
                    if let Ok(acked) = tokio::time::timeout(Duration::from_millis(500), acked).await
                    {
                        acked?;
                        return Ok(link);
                    }
                }
                Err(io::Error::other("no UDP ack within 5 s"))
            }
        }
    }

    /// A TCP link over a stream already connected (with whatever socket
    /// options the caller set).
    pub async fn over_tcp(stream: TcpStream) -> io::Result<Link> {
        stream.set_nodelay(true)?;
        let (reader, mut writer) = stream.into_split();
        writer.write_all(b"/json\n").await?;
        Ok(Link::Tcp {
            reader: BufReader::new(reader),
            writer,
            pending: Vec::new(),
        })
    }

    /// Sends a command (`None`: for UDP, a poll that only fetches pushes).
    pub async fn send(&mut self, command: Option<Value>) -> io::Result<()> {
        match self {
            Link::Tcp { writer, .. } => {
                let Some(command) = command else {
                    return Ok(());
                };
                let mut line = command.to_string();
                line.push('\n');
                writer.write_all(line.as_bytes()).await
            }
            Link::Web(socket) => {
                let Some(command) = command else {
                    return Ok(());
                };
                socket
                    .send(Message::text(command.to_string()))
                    .await
                    .map_err(io::Error::other)
            }
            Link::Udp(udp) => {
                let mut datagram = json!({ "id": udp.next_id });
                udp.next_id += 1;
                if let Some(command) = command {
                    datagram["cmd"] = command;
                }
                udp.send_datagram(datagram).await
            }
        }
    }

    /// Sends raw bytes as they are (TCP) or as one text frame (web).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Tcp { writer, .. } => writer.write_all(bytes).await,
            Link::Web(socket) => socket
                .send(Message::text(String::from_utf8_lossy(bytes).into_owned()))
                .await
                .map_err(io::Error::other),
            Link::Udp(udp) => udp.socket.send(bytes).await.map(drop),
        }
    }

    /// The next events, waiting at most `patience`; an empty list when
    /// nothing came in time. An error when the link is closed.
    pub async fn events(&mut self, patience: Duration) -> io::Result<Vec<Value>> {
        let received = tokio::time::timeout(patience, self.receive()).await;
        received.unwrap_or(Ok(Vec::new()))
    }

    async fn receive(&mut self) -> io::Result<Vec<Value>> {
        match self {
            Link::Tcp {
                reader, pending, ..
            } => loop {
                if reader.read_until(b'\n', pending).await? == 0 {
                    return Err(closed());
                }
                if pending.last() != Some(&b'\n') {
                    continue;
                }
                let line = std::mem::take(pending);
                // The mode switch's answer comes once in text.
                if let Ok(event) = serde_json::from_slice::<Value>(&line) {
                    return Ok(vec![event]);
                }
            },
            Link::Web(socket) => loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        let event = serde_json::from_str(text.as_str())?;
                        return Ok(vec![event]);
                    }
                    Some(Ok(Message::Close(_))) | None => return Err(closed()),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(io::Error::other(error)),
                }
            },
            Link::Udp(udp) => loop {
                if let Some(events) = udp.receive().await? {
                    return Ok(events);
                }
            },
        }
    }

    /// The push datagrams a UDP link found missing (0 elsewhere).
    pub fn pushes_lost(&self) -> u64 {
        match self {
            Link::Udp(udp) => udp.pushes_lost,
            _ => 0,
        }
    }

    /// Ends the link abruptly: a reset for TCP (as a killed process's
    /// socket gives when data is unread), a dropped socket otherwise.
    pub fn kill(self) {
        if let Link::Tcp { reader, writer, .. } = self {
            if let Ok(stream) = reader.into_inner().reunite(writer) {
                let _ = stream.set_zero_linger();
            }
        }
    }
}

impl UdpLink {
    async fn send_datagram(&mut self, mut datagram: Value) -> io::Result<()> {
        if let Some(proof) = &self.proof {
            datagram["proof"] = Value::String(proof.clone());
        }
        self.socket.send(datagram.to_string().as_bytes()).await?;
        self.last = Some(datagram);
        Ok(())
    }

    /// One datagram's events; `None` for a retry, which is answered here.
    async fn receive(&mut self) -> io::Result<Option<Vec<Value>>> {
        let mut buf = vec![0u8; 65_536];
        let len = self.socket.recv(&mut buf).await?;
        let datagram: Value = serde_json::from_slice(&buf[..len])?;
        match datagram["type"].as_str() {
            Some("retry") => {
                self.proof = datagram["token"].as_str().map(str::to_string);
                if let Some(last) = self.last.take() {
                    self.send_datagram(last).await?;
                }
                Ok(None)
            }
            Some("push") => {
                let seq = datagram["seq"].as_u64().unwrap_or(0);
                if let Some(last) = self.last_push {
                    self.pushes_lost += seq.saturating_sub(last + 1);
                }
                self.last_push = Some(seq);
                Ok(Some(events_of(datagram)))
            }
            _ => Ok(Some(events_of(datagram))),
        }
    }
}

fn events_of(mut datagram: Value) -> Vec<Value> {
    match datagram["events"].take() {
        Value::Array(events) => events,
        _ => Vec::new(),
    }
}

/// A command object.
pub fn say(room: &str, text: &str) -> Value {
    json!({ "type": "say", "room": room, "text": text })
}

pub fn nick(nick: &str) -> Value {
    json!({ "type": "nick", "nick": nick })
}

pub fn join(room: &str) -> Value {
    json!({ "type": "join", "room": room })
}

pub fn part(room: &str) -> Value {
    json!({ "type": "part", "room": room })
}

pub fn quit() -> Value {
    json!({ "type": "quit" })
}

pub fn history(count: usize) -> Value {
    json!({ "type": "history", "count": count })
}
