//! Churners: members that come and go on every door, each episode ending
//! in one of the ways real ones do, good and bad.

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use crate::link::{self, Addrs, Door, Link};
use crate::ROOM;

/// The other room churners use.
const CHURN_ROOM: &str = "churn";
/// The longest one episode may take.
const EPISODE_LIMIT: Duration = Duration::from_secs(30);
/// How long a slow reader holds its connection without reading.
const SLOW_HOLD: Duration = Duration::from_secs(4);
/// How many `/history 1000` a slow reader asks for.
const SLOW_REQUESTS: usize = 80;
/// The quickest a churner starts one episode after another, and the most
/// episodes it runs: the load is bounded in rate and count.
const EPISODE_PACE: Duration = Duration::from_millis(50);
const MAX_EPISODES: u64 = 100_000;

/// What a round of churn did.
#[derive(Debug, Default)]
pub struct Tally {
    pub episodes: u64,
    pub by_door: [u64; 3],
    pub unexpected: u64,
    pub errors: Vec<String>,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} episodes (tcp {}, web {}, udp {}), {} failed unexpectedly",
            self.episodes, self.by_door[0], self.by_door[1], self.by_door[2], self.unexpected
        )?;
        for error in &self.errors {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// A small deterministic generator: the same seed, the same churn.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) % n
    }
}

/// Runs `per_door` churners on each door for `duration`.
pub async fn run(addrs: Addrs, per_door: usize, duration: Duration, round: u64) -> Tally {
    let end = Instant::now() + duration;
    let mut workers = Vec::new();
    for (door_index, door) in Door::ALL.into_iter().enumerate() {
        for worker in 0..per_door {
            let name = format!("c{round}{}{worker}", &door.name()[..1]);
            let seed = 0x9e37_79b9_7f4a_7c15 ^ ((round << 16) + (door_index * 64 + worker) as u64);
            workers.push(tokio::spawn(churner(door, addrs, name, seed, end)));
        }
    }
    let mut tally = Tally::default();
    for worker in workers {
        if let Ok(done) = worker.await {
            tally.episodes += done.episodes;
            for (total, count) in tally.by_door.iter_mut().zip(done.by_door) {
                *total += count;
            }
            tally.unexpected += done.unexpected;
            tally.errors.extend(done.errors);
        }
    }
    tally.errors.truncate(10);
    tally
}

async fn churner(door: Door, addrs: Addrs, name: String, seed: u64, end: Instant) -> Tally {
    let mut rng = Rng(seed | 1);
    let mut tally = Tally::default();
    let door_index = Door::ALL.iter().position(|d| *d == door).unwrap_or(0);
    let mut episode = 0u64;
    let mut pace = tokio::time::interval(EPISODE_PACE);
    while Instant::now() < end && episode < MAX_EPISODES {
        pace.tick().await;
        let nick = format!("{name}n{episode}");
        let room = if rng.below(2) == 0 { ROOM } else { CHURN_ROOM };
        let kind = rng.below(6);
        let run = async {
            match door {
                Door::Tcp => tcp_episode(kind, &addrs, &nick, room).await,
                Door::Web => web_episode(kind % 4, &addrs, &nick, room).await,
                Door::Udp => udp_episode(kind % 4, &addrs, &nick, room).await,
            }
        };
        let outcome = match tokio::time::timeout(EPISODE_LIMIT, run).await {
            Ok(outcome) => outcome,
            Err(_) => Err(io::Error::other("took over 30 s")),
        };
        if let Err(error) = outcome {
            tally.unexpected += 1;
            if tally.errors.len() < 3 {
                let error: String = error.to_string().chars().take(160).collect();
                tally
                    .errors
                    .push(format!("{} episode {kind} ({nick}): {error}", door.name()));
            }
        }
        tally.episodes += 1;
        tally.by_door[door_index] += 1;
        episode += 1;
    }
    tally
}

/// Joins `room` under `nick`, says a line or two there, and leaves it
/// for the other room.
async fn chat(link: &mut Link, nick: &str, room: &str) -> io::Result<()> {
    link.send(Some(link::nick(nick))).await?;
    link.send(Some(link::join(room))).await?;
    link.send(Some(link::say(room, &format!("churn {nick} says hello"))))
        .await?;
    link.send(Some(link::part(room))).await?;
    let other = if room == ROOM { CHURN_ROOM } else { ROOM };
    link.send(Some(link::join(other))).await?;
    link.send(Some(link::say(other, "churn 你好, and goodbye")))
        .await
}

/// Says goodbye and reads until the server closes the link.
async fn quit(link: &mut Link) -> io::Result<()> {
    link.send(Some(link::quit())).await?;
    until_closed(link).await
}

/// Reads until the server closes the link, for at most 10 s.
async fn until_closed(link: &mut Link) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if link.events(Duration::from_millis(500)).await.is_err() {
            return Ok(());
        }
    }
    Err(io::Error::other("the server did not close within 10 s"))
}

/// Reads raw bytes until the server closes, for at most 10 s.
async fn until_eof(stream: &mut TcpStream) -> io::Result<()> {
    let mut sink = vec![0u8; 4096];
    let read_all = async {
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(10), read_all).await {
        Ok(Ok(())) => Ok(()),
        // A reset after the server's goodbye is a close as well.
        Ok(Err(error)) if error.kind() == io::ErrorKind::ConnectionReset => Ok(()),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(io::Error::other("the server did not close within 10 s")),
    }
}

/// Asks for a lot without reading any of it, then goes. On loopback the
/// kernel takes megabytes before the server's queue fills, so it takes
/// many requests (read at the rate limit) and a room with a long past to
/// be dropped as too slow: the longer the soak, the more of them are.
async fn slow_reader(mut link: Link, nick: &str) -> io::Result<()> {
    link.send(Some(link::nick(nick))).await?;
    link.send(Some(link::join(ROOM))).await?;
    for _ in 0..SLOW_REQUESTS {
        // The server may drop it before it is done asking.
        if link.send(Some(link::history(1000))).await.is_err() {
            break;
        }
    }
    tokio::time::sleep(SLOW_HOLD).await;
    link.kill();
    Ok(())
}

async fn tcp_episode(kind: u64, addrs: &Addrs, nick: &str, room: &str) -> io::Result<()> {
    match kind {
        // Chats and quits.
        0 => {
            let mut link = Link::open(Door::Tcp, addrs).await?;
            chat(&mut link, nick, room).await?;
            quit(&mut link).await
        }
        // Vanishes: a FIN without a word.
        1 => {
            let mut link = Link::open(Door::Tcp, addrs).await?;
            chat(&mut link, nick, room).await?;
            link.events(Duration::from_millis(100)).await?;
            Ok(())
        }
        // Killed: a reset.
        2 => {
            let mut link = Link::open(Door::Tcp, addrs).await?;
            chat(&mut link, nick, room).await?;
            link.kill();
            Ok(())
        }
        // A slow reader with a small receive buffer.
        3 => {
            let socket = TcpSocket::new_v4()?;
            socket.set_recv_buffer_size(4096)?;
            let stream = socket.connect(addrs.tcp).await?;
            slow_reader(Link::over_tcp(stream).await?, nick).await
        }
        // What the server must refuse, line by line, then a goodbye.
        4 => {
            let mut stream = TcpStream::connect(addrs.tcp).await?;
            stream
                .write_all(format!("/nick {nick}\n").as_bytes())
                .await?;
            stream.write_all(&vec![b'x'; 10_000]).await?;
            stream.write_all(b"\n\xff\xfe bad\n/frobnicate\n").await?;
            stream.write_all(b"{\"type\":\"say\"}\nbyebye\n").await?;
            until_eof(&mut stream).await
        }
        // Not chat at all: an HTTP request on the text port.
        _ => {
            let mut stream = TcpStream::connect(addrs.tcp).await?;
            stream
                .write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n/nick evil\n")
                .await?;
            until_eof(&mut stream).await
        }
    }
}

async fn web_episode(kind: u64, addrs: &Addrs, nick: &str, room: &str) -> io::Result<()> {
    let mut link = Link::open(Door::Web, addrs).await?;
    match kind {
        0 => {
            chat(&mut link, nick, room).await?;
            quit(&mut link).await
        }
        // Gone without a close frame.
        1 => {
            chat(&mut link, nick, room).await?;
            link.events(Duration::from_millis(100)).await?;
            Ok(())
        }
        2 => slow_reader(link, nick).await,
        // Frames that are not commands, then a goodbye.
        _ => {
            link.send(Some(link::nick(nick))).await?;
            link.send_raw(b"hello, not JSON").await?;
            link.send_raw(br#"{"type":"mode","mode":"text"}"#).await?;
            link.send_raw(&vec![b'x'; 30_000]).await?;
            quit(&mut link).await
        }
    }
}

async fn udp_episode(kind: u64, addrs: &Addrs, nick: &str, room: &str) -> io::Result<()> {
    match kind {
        // Our client's way: a retry, then proof, then chat and quit.
        0 => {
            let mut link = Link::open(Door::Udp, addrs).await?;
            chat(&mut link, nick, room).await?;
            link.send(Some(link::quit())).await?;
            link.events(Duration::from_millis(500)).await?;
            Ok(())
        }
        // A bare client: hello, the code, chat, bye.
        1 => {
            let socket = bare_member(addrs, nick).await?;
            exchange(&socket, format!("/join {room}").as_bytes()).await?;
            exchange(&socket, "churn 你好 over udp".as_bytes()).await?;
            exchange(&socket, b"bye").await?;
            Ok(())
        }
        // A bare member that falls silent, and expires. Its socket is
        // kept until then: a new socket on the same port would be taken
        // for the same member, as UDP knows members by address.
        2 => {
            let socket = bare_member(addrs, nick).await?;
            exchange(&socket, format!("/join {room}").as_bytes()).await?;
            tokio::time::sleep(Duration::from_secs(crate::UDP_EXPIRY_SECS + 1)).await;
            Ok(())
        }
        // Never proven: a few datagrams, each answered once (or not,
        // when the budget for the unproven is spent).
        _ => {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            socket.connect(addrs.udp).await?;
            for junk in [&b"\x00\x01\x02"[..], b"{\"id\":", b"hello"] {
                socket.send(junk).await?;
                let mut buf = [0u8; 2048];
                let _ =
                    tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buf)).await;
            }
            Ok(())
        }
    }
}

/// Sends one datagram and waits (up to 2 s, sending again) for its answer.
async fn exchange(socket: &UdpSocket, datagram: &[u8]) -> io::Result<String> {
    let mut buf = vec![0u8; 65_536];
    for _ in 0..4 {
        socket.send(datagram).await?;
        let wait = Duration::from_millis(500);
        if let Ok(received) = tokio::time::timeout(wait, socket.recv(&mut buf)).await {
            return Ok(String::from_utf8_lossy(&buf[..received?]).into_owned());
        }
    }
    Err(io::Error::other("no answer to a datagram within 2 s"))
}

/// A bare UDP member named `nick`: hello, then the code it was given.
async fn bare_member(addrs: &Addrs, nick: &str) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(addrs.udp).await?;
    let hint = exchange(&socket, b"hello").await?;
    let code = hint
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find(|word| word.len() == 8)
        .ok_or_else(|| io::Error::other(format!("no code in {hint:?}")))?
        .to_string();
    exchange(&socket, format!("{code} /nick {nick}").as_bytes()).await?;
    Ok(socket)
}
