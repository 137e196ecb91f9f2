//! `sockchat bench`: a load generator for line-based chat servers (ours,
//! `ncat --chat`, IRC servers, tokio's chat example), like
//! `redis-benchmark` for Redis.
//!
//! N clients join one room; S of them send R messages a second each (or as
//! fast as the server takes them) for T seconds. Every payload carries its
//! sender, sequence number and send time, so each receiving client counts
//! deliveries and measures end-to-end latency. A message is expected at
//! every client but its sender, which makes the count the same for servers
//! that echo a sender's own lines and servers that do not.
//!
//! Against sockchat (`--greeting`, `--wire udp`, `--wire ws`) the clients
//! move to a room of their own, `~bench` by default: an ephemeral room,
//! whose messages are never stored, and the default room people chat in
//! never hears of them. A client the server closes on is reported with
//! the server's reason and what to change.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use memchr::memmem::{Finder, FinderRev};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_rustls::TlsConnector;

use crate::protocol::datagram::{ClientDatagram, ServerDatagram};
use crate::protocol::{ClientCommand, ServerEvent};
use crate::tls::trust::{Authorities, ServerTrust, TrustPolicy};

pub mod plot;

/// What to speak to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Wire {
    /// Plain lines over TCP (sockchat, ncat --chat, tokio's chat).
    Tcp,
    /// IRC: register, JOIN a channel, PRIVMSG to it.
    Irc,
    /// sockchat's structured UDP datagrams (proven, so pushes flow).
    Udp,
    /// sockchat's WebSocket (JSON commands).
    Ws,
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct BenchPlan {
    pub server: String,
    pub wire: Wire,
    pub clients: usize,
    pub senders: usize,
    /// Messages a second per sender; 0 sends as fast as the server takes them.
    pub rate: f64,
    /// With `rate` 0: senders write back to back, as fast as TCP takes the
    /// bytes (an open loop), instead of keeping a window of messages the
    /// observer has not seen yet (a closed loop).
    pub back_to_back: bool,
    pub duration: Duration,
    /// After sending stops, how long to wait for deliveries still on the way.
    pub drain: Duration,
    /// The server's processes, for CPU time and memory.
    pub pids: Vec<u32>,
    /// The IRC channel (with `#`).
    pub channel: String,
    /// TCP clients wait for the server's first line before counting as
    /// seated.
    pub greeting: bool,
    /// How long all the clients may take to be seated.
    pub connect_timeout: Duration,
    /// The sockchat room the clients move to.
    pub room: String,
    /// Speak TLS (`--wire tcp`, `irc` or `ws`): the certificate is not
    /// checked, since what is measured is what encryption costs.
    pub tls: bool,
}

/// Exit code of a run that lost deliveries or had clients dropped (the
/// report is printed all the same); a run that could not be made exits 1.
pub const EXIT_LOST: u8 = 3;

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub wire: Wire,
    /// Over TLS.
    pub tls: bool,
    pub clients_wanted: usize,
    /// Fewer than wanted when the server did not seat them all within
    /// the connect timeout.
    pub clients_connected: usize,
    /// Clients whose connection the server closed (or that failed) before
    /// the run ended: a server under load should drop no reader.
    pub clients_dropped: usize,
    /// Why they went, as the server said, and what to change.
    pub departures: Vec<Departures>,
    /// How long connecting (and, for IRC, registering) every client took.
    pub connect_seconds: f64,
    pub senders: usize,
    pub seconds: f64,
    pub messages_sent: u64,
    pub deliveries_expected: u64,
    pub deliveries_received: u64,
    pub loss: f64,
    pub deliveries_per_second: f64,
    /// Latency percentiles in milliseconds: p50, p90, p99, max.
    pub latency_ms: Latencies,
    /// With several servers (a cluster's nodes): the addresses, and the
    /// latency of deliveries from a sender on one to a client on another.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_cross_node_ms: Option<Latencies>,
    pub server: Option<ServerUsage>,
    /// The latency distribution: (percentile, ms) steps, for `--plot`.
    #[serde(skip)]
    pub latency_curve: Vec<(f64, f64)>,
}

/// Clients that went away for one reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Departures {
    pub reason: String,
    pub clients: usize,
    /// What to change so it does not happen (empty when nothing helps).
    pub advice: String,
    /// What the server said last, from one of them.
    pub said: String,
}

impl Departures {
    /// What a client's last words from the server (if any) mean.
    fn classify(said: Option<&str>) -> (&'static str, &'static str) {
        let said = said.unwrap_or_default();
        let rules: [(&str, &str, &str); 7] = [
            (
                "excess flood",
                "flooding",
                "the server's flood limit removed senders: serve with --max-rate 0, \
                 or bench with a --rate under the server's --max-rate",
            ),
            (
                "server full",
                "refused: server full",
                "serve with a higher --max-clients (0: no limit)",
            ),
            (
                "too many connections from your address",
                "refused: too many from one address",
                "serve with --max-per-ip 0, or bench with fewer --clients",
            ),
            (
                "sendq exceeded",
                "slow: fell behind",
                "the clients read too slowly: give the load its own core, or lower --rate",
            ),
            ("idle", "idle", "serve with a longer --idle (0: none)"),
            (
                "no datagram for",
                "expired",
                "serve with a longer --udp-expiry",
            ),
            ("shutting down", "the server shut down", ""),
        ];
        rules
            .iter()
            .find(|(needle, ..)| said.contains(needle))
            .map_or(
                if said.is_empty() {
                    ("closed without a word", "look at the server's log")
                } else {
                    ("closed by the server", "")
                },
                |(_, reason, advice)| (reason, advice),
            )
    }

    /// Groups clients' last words by what they mean.
    fn tally(last_words: impl IntoIterator<Item = Option<String>>) -> Vec<Departures> {
        let mut groups: Vec<Departures> = Vec::new();
        for said in last_words {
            let (reason, advice) = Departures::classify(said.as_deref());
            match groups.iter_mut().find(|group| group.reason == reason) {
                Some(group) => group.clients += 1,
                None => groups.push(Departures {
                    reason: reason.to_string(),
                    clients: 1,
                    advice: advice.to_string(),
                    said: said.unwrap_or_default(),
                }),
            }
        }
        groups.sort_by_key(|group| std::cmp::Reverse(group.clients));
        groups
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latencies {
    /// The percentiles of `histogram` (in µs), in milliseconds.
    fn of(histogram: &Histogram<u64>) -> Latencies {
        let millis = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
        Latencies {
            p50: millis(0.50),
            p90: millis(0.90),
            p99: millis(0.99),
            max: histogram.max() as f64 / 1000.0,
        }
    }
}

/// The server process's cost, from /proc.
#[derive(Debug, Clone, Serialize)]
pub struct ServerUsage {
    /// Of all its processes.
    pub cpu_seconds: f64,
    /// Each process's, by pid, in the order given.
    pub cpu_seconds_by_pid: Vec<(u32, f64)>,
    /// Server CPU time per delivery received, in nanoseconds.
    pub cpu_ns_per_delivery: f64,
    pub rss_before_kib: u64,
    pub rss_connected_kib: u64,
    pub rss_after_kib: u64,
    /// (rss_connected - rss_before) / clients.
    pub kib_per_connection: f64,
}

/// Shared between the run's tasks.
struct Counters {
    start: Instant,
    sending: AtomicBool,
    /// Ends every client's loop; each returns its latencies.
    stop: tokio_util::sync::CancellationToken,
    /// Per sender, how many of its messages the observer (the last client,
    /// never a sender) has received: the closed loop's window.
    delivered: Vec<watch::Sender<u64>>,
    sent: AtomicU64,
    received: AtomicU64,
    /// When the latest delivery arrived, in µs since `start`.
    last_arrival: AtomicU64,
}

/// Bytes read at a time by a line client: many deliveries per read.
const READ_CHUNK: usize = 64 * 1024;

/// Send buffer of each client's socket, in bytes (the kernel doubles it).
const SEND_BUFFER: u32 = 32 * 1024;

/// Connections being set up at once.
const CONNECTING: usize = 64;

/// How long senders get to finish the message they were sending when the
/// run's sending time ended.
const SETTLE: Duration = Duration::from_millis(100);

/// The payload marker; a payload is `bench s<sender> q<seq> t<micros>`.
const MARK: &str = "bench s";

fn payload(sender: usize, seq: u64, micros: u64) -> String {
    format!("{MARK}{sender} q{seq} t{micros}")
}

/// Calls `found` with (sender, seq, send time in µs) for each payload in a
/// line, frame or datagram (a UDP push can carry several). Replayed history
/// is not a delivery and is skipped. Works on bytes without allocating:
/// the load generator must be much cheaper per delivery than the server.
fn for_each_payload(text: &[u8], mut found: impl FnMut(usize, u64, u64)) {
    // Built once: building a finder costs more than a search in a line.
    static MARK_FINDER: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(MARK));
    static MARK_FINDER_REV: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(MARK));
    static HISTORY_FINDER: LazyLock<Finder<'static>> =
        LazyLock::new(|| Finder::new(r#""type":"history""#));
    let mut parse = |at: usize| {
        let mut words = text[at + MARK.len()..].split(|byte| b" \"}\r\n".contains(byte));
        let mut number = |prefix: &[u8]| {
            let word = words.next()?.strip_prefix(prefix)?;
            (!word.is_empty() && word.len() < 20 && word.iter().all(u8::is_ascii_digit)).then(
                || {
                    word.iter()
                        .fold(0, |n, digit| n * 10 + u64::from(digit - b'0'))
                },
            )
        };
        if let (Some(sender), Some(seq), Some(micros)) = (number(b""), number(b"q"), number(b"t")) {
            found(sender as usize, seq, micros);
        }
    };
    if text.first() == Some(&b'{') {
        // A frame or datagram: a UDP push may hold several payloads.
        if HISTORY_FINDER.find(text).is_none() {
            MARK_FINDER.find_iter(text).for_each(parse);
        }
    } else if !text.starts_with(b"(history)") {
        // A line holds one, at its end: found from the end, so what comes
        // before it (a long IRC source, say) costs nothing to skip.
        if let Some(at) = MARK_FINDER_REV.rfind(text) {
            parse(at);
        }
    }
}

/// A client's count of what reached it, handed to the shared counters once
/// per read rather than once per delivery.
struct Tally {
    sender: Option<usize>,
    observer: bool,
    /// Which of the servers this client is on, of how many; a sender's is
    /// its index modulo that.
    node: usize,
    nodes: usize,
    latency: Histogram<u64>,
    /// Deliveries from senders on another server.
    cross_node: Histogram<u64>,
    received: u64,
    last_arrival: u64,
}

impl Tally {
    /// Everything in `text`, which arrived at `now` (µs since the start).
    /// Counts the payloads in `text`; whether there was any.
    fn record(&mut self, text: &[u8], now: u64, counters: &Counters) -> bool {
        let mut found = false;
        for_each_payload(text, |from, seq, micros| {
            found = true;
            if self.observer {
                if let Some(count) = counters.delivered.get(from) {
                    count.send_if_modified(|count| {
                        let changed = seq + 1 > *count;
                        *count = (*count).max(seq + 1);
                        changed
                    });
                }
            }
            if Some(from) != self.sender {
                let took = now.saturating_sub(micros).max(1);
                let _ = self.latency.record(took);
                if from % self.nodes != self.node {
                    let _ = self.cross_node.record(took);
                }
                self.received += 1;
                self.last_arrival = now;
            }
        });
        found
    }

    fn flush(&mut self, counters: &Counters) {
        if self.received > 0 {
            counters
                .received
                .fetch_add(std::mem::take(&mut self.received), Ordering::Relaxed);
            counters
                .last_arrival
                .fetch_max(self.last_arrival, Ordering::Relaxed);
        }
    }
}

/// Runs the plan and reports.
pub async fn run(plan: &BenchPlan, progress: bool) -> anyhow::Result<BenchReport> {
    if plan.senders > plan.clients {
        bail!(
            "--senders ({}) cannot exceed --clients ({})",
            plan.senders,
            plan.clients
        );
    }
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for server in plan.server.split(',') {
        let addr = tokio::net::lookup_host(server)
            .await
            .with_context(|| format!("cannot resolve {server}"))?
            .next()
            .with_context(|| format!("no address for {server}"))?;
        addrs.push(addr);
    }
    let addrs = &addrs;
    let tls = match (plan.tls, plan.wire) {
        (true, Wire::Udp) => bail!("--tls is for the stream wires (tcp, irc, ws), not udp"),
        (true, _) => Some(unchecked_tls()?),
        (false, _) => None,
    };
    let tls = &tls;
    let rss_before = rss_of(&plan.pids);
    let cpu_before = cpu_of(&plan.pids);

    let connecting = Instant::now();
    let bar = progress_bar(progress, plan.clients as u64, "connecting");
    // Clients connect CONNECTING at a time, as people arriving would, not
    // one by one; their order (and so who sends) is kept.
    let mut arriving = futures_util::stream::iter(0..plan.clients)
        .map(|index| async move {
            Client::connect(plan, addrs[index % addrs.len()], index, tls.as_ref())
                .await
                .with_context(|| format!("client {index} could not join"))
        })
        .buffered(CONNECTING);
    let mut clients = Vec::with_capacity(plan.clients);
    let give_up_at = Instant::now() + plan.connect_timeout;
    // A server that seats clients too slowly is measured with those it
    // seated in time (the report says how many).
    while let Ok(Some(client)) = tokio::time::timeout_at(give_up_at, arriving.next()).await {
        clients.push(client?);
        bar.inc(1);
    }
    drop(arriving);
    let seated = clients.len();
    if seated <= plan.senders || seated == 0 {
        bail!(
            "only {seated} of {} clients were seated in {:?}",
            plan.clients,
            plan.connect_timeout
        );
    }
    bar.finish_and_clear();
    let connect_seconds = connecting.elapsed().as_secs_f64();
    let rss_connected = rss_of(&plan.pids);

    let counters = Arc::new(Counters {
        start: Instant::now(),
        sending: AtomicBool::new(true),
        stop: tokio_util::sync::CancellationToken::new(),
        delivered: (0..plan.senders).map(|_| watch::Sender::new(0)).collect(),
        sent: AtomicU64::new(0),
        received: AtomicU64::new(0),
        last_arrival: AtomicU64::new(0),
    });
    let mut tasks = JoinSet::new();
    let observer = seated - 1;
    for (index, client) in clients.into_iter().enumerate() {
        let sender = (index < plan.senders).then_some(index);
        let pace = match sender {
            _ if plan.rate > 0.0 => {
                let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
                interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
                Pace::Rate(interval)
            }
            Some(_) if plan.back_to_back => Pace::BackToBack,
            Some(index) => Pace::Window(counters.delivered[index].subscribe()),
            None => Pace::Never,
        };
        let node = (index % addrs.len(), addrs.len());
        tasks.spawn(client.run(sender, index == observer, node, pace, counters.clone()));
    }
    let bar = progress_bar(progress, plan.duration.as_secs(), "sending");
    let send_until = counters.start + plan.duration;
    while Instant::now() < send_until {
        tokio::time::sleep(Duration::from_millis(200).min(send_until - Instant::now())).await;
        bar.set_position(counters.start.elapsed().as_secs());
    }
    counters.sending.store(false, Ordering::Relaxed);
    let sending_time = counters.start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    // A sender that saw `sending` just before it went false counts its
    // last message now; give it a moment so the count is final.
    tokio::time::sleep(SETTLE).await;

    // Deliveries still on the way: wait until all arrived or the drain ends.
    let expected_after = |sent: u64| sent * (seated as u64 - 1);
    let drain_until = Instant::now() + plan.drain;
    while Instant::now() < drain_until
        && counters.received.load(Ordering::Relaxed)
            < expected_after(counters.sent.load(Ordering::Relaxed))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server's cost is read while every client is still connected: a
    // server may die of the disconnections (ncat does, of SIGPIPE).
    let cpu_after = cpu_of(&plan.pids);
    let rss_after = rss_of(&plan.pids);
    counters.stop.cancel();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds");
    let mut cross_node = latency.clone();
    let mut last_words = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(ended)) => {
                latency.add(&ended.latency).expect("same bounds");
                cross_node.add(&ended.cross_node).expect("same bounds");
                if let Some(said) = ended.dropped {
                    last_words.push(said);
                }
            }
            Ok(Err(error)) => last_words.push(Some(format!("{error:#}"))),
            Err(_) => last_words.push(None),
        }
    }
    let dropped = last_words.len();
    let departures = Departures::tally(last_words);
    let sent = counters.sent.load(Ordering::Relaxed);
    let expected = expected_after(sent);
    let received = counters.received.load(Ordering::Relaxed);
    let server = match (rss_before, rss_connected) {
        (Some(before), Some(connected)) => Some({
            let cpu_seconds_by_pid: Vec<(u32, f64)> = (plan.pids.iter().zip(&cpu_before))
                .zip(&cpu_after)
                .map(|((pid, before), after)| (*pid, after.unwrap_or(0.0) - before.unwrap_or(0.0)))
                .collect();
            let cpu_seconds = cpu_seconds_by_pid.iter().map(|(_, cpu)| cpu).sum();
            ServerUsage {
                cpu_seconds,
                cpu_seconds_by_pid,
                cpu_ns_per_delivery: cpu_seconds * 1e9 / received.max(1) as f64,
                rss_before_kib: before,
                rss_connected_kib: connected,
                rss_after_kib: rss_after.unwrap_or(0),
                kib_per_connection: connected.saturating_sub(before) as f64 / seated as f64,
            }
        }),
        _ => None,
    };
    Ok(BenchReport {
        wire: plan.wire,
        tls: plan.tls,
        clients_wanted: plan.clients,
        clients_connected: seated,
        clients_dropped: dropped,
        departures,
        connect_seconds,
        senders: plan.senders,
        seconds: sending_time,
        messages_sent: sent,
        deliveries_expected: expected,
        deliveries_received: received,
        loss: if expected == 0 {
            0.0
        } else {
            1.0 - received as f64 / expected as f64
        },
        // Over the time deliveries took: sending, and the drain while
        // deliveries still came.
        deliveries_per_second: received as f64
            / (counters.last_arrival.load(Ordering::Relaxed) as f64 / 1e6).max(sending_time),
        latency_ms: Latencies::of(&latency),
        servers: match addrs.len() {
            1 => Vec::new(),
            _ => plan.server.split(',').map(str::to_string).collect(),
        },
        latency_cross_node_ms: (addrs.len() > 1).then(|| Latencies::of(&cross_node)),
        server,
        latency_curve: latency
            .iter_quantiles(4)
            .map(|step| {
                (
                    step.quantile_iterated_to() * 100.0,
                    step.value_iterated_to() as f64 / 1000.0,
                )
            })
            .collect(),
    })
}

fn progress_bar(show: bool, length: u64, what: &'static str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(length);
    bar.set_message(what);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len}") {
        bar.set_style(style);
    }
    bar
}

/// One connected client, whichever wire it speaks.
enum Client {
    Lines {
        reader: tokio::io::Lines<BufReader<ReadSide>>,
        writer: WriteSide,
        irc_channel: Option<String>,
    },
    Ws(Box<tokio_tungstenite::WebSocketStream<Box<dyn Stream>>>),
    Udp {
        socket: UdpSocket,
        next_id: u64,
    },
}

impl Client {
    async fn connect(
        plan: &BenchPlan,
        addr: SocketAddr,
        index: usize,
        tls: Option<&TlsConnector>,
    ) -> anyhow::Result<Client> {
        match plan.wire {
            Wire::Tcp | Wire::Irc => {
                let (reader, mut writer) = Transport::open(addr, tls).await?.into_split();
                let mut reader = BufReader::new(reader).lines();
                let irc_channel = (plan.wire == Wire::Irc).then(|| plan.channel.clone());
                if let Some(channel) = &irc_channel {
                    let nick = format!("bench{index}");
                    let register = format!("NICK {nick}\r\nUSER {nick} 0 * :sockchat bench\r\n");
                    send(&mut writer, &register).await?;
                    wait_for_line(&mut reader, &mut writer, " 001 ").await?;
                    send(&mut writer, &format!("JOIN {channel}\r\n")).await?;
                    // 366: end of the names list, sent once the join is done.
                    wait_for_line(&mut reader, &mut writer, " 366 ").await?;
                } else if plan.greeting {
                    let welcome = wait_for_line(&mut reader, &mut writer, "").await?;
                    if welcome.starts_with("! ") {
                        return Err(refused(&welcome));
                    }
                    // sockchat: to the bench's own room, out of the default one.
                    let default = welcome
                        .split_once("you are in #")
                        .and_then(|(_, rest)| rest.split(' ').next());
                    if let Some(default) = default.filter(|default| *default != plan.room) {
                        let (room, left) = (&plan.room, format!(" left #{default}"));
                        send(&mut writer, &format!("/join {room}\n/part {default}\n")).await?;
                        wait_for_line(&mut reader, &mut writer, &left).await?;
                    }
                }
                Ok(Client::Lines {
                    reader,
                    writer,
                    irc_channel,
                })
            }
            Wire::Ws => {
                use tokio_tungstenite::tungstenite::Message;
                let scheme = if tls.is_some() { "wss" } else { "ws" };
                let stream = Transport::open(addr, tls).await?.into_stream();
                let (mut socket, _) =
                    tokio_tungstenite::client_async(format!("{scheme}://{addr}/ws"), stream)
                        .await?;
                // The welcome says we are in, and where.
                let welcome = socket.next().await.context("closed before the welcome")??;
                let default = match serde_json::from_slice(&welcome.into_data()) {
                    Ok(ServerEvent::Welcome { room, .. }) => room,
                    Ok(ServerEvent::Error { message, .. }) => return Err(refused(&message)),
                    _ => bail!("the first message was not a welcome"),
                };
                if default != plan.room {
                    for command in move_to(&plan.room, &default) {
                        let json = serde_json::to_string(&command)?;
                        socket.send(Message::Text(json.into())).await?;
                    }
                    loop {
                        let frame = socket.next().await.context("closed while moving rooms")??;
                        if let Ok(ServerEvent::Leave { room, .. }) =
                            serde_json::from_slice(&frame.into_data())
                        {
                            if room == default {
                                break;
                            }
                        }
                    }
                }
                Ok(Client::Ws(Box::new(socket)))
            }
            Wire::Udp => {
                let local = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let socket = UdpSocket::bind(local).await?;
                socket.connect(addr).await?;
                let events = udp_request(&socket, 1, None).await?;
                let default = events.iter().find_map(|event| match event {
                    ServerEvent::Welcome { room, .. } => Some(room.clone()),
                    _ => None,
                });
                let mut next_id = 2;
                if let Some(default) = default.filter(|default| *default != plan.room) {
                    for command in move_to(&plan.room, &default) {
                        udp_request(&socket, next_id, Some(command)).await?;
                        next_id += 1;
                    }
                }
                Ok(Client::Udp { socket, next_id })
            }
        }
    }

    /// Sends (when `sender`) and receives until stopped; returns the
    /// latencies it measured, in µs, and whether the server closed on it.
    /// The `observer` also tracks how far each sender's messages have come,
    /// for closed-loop senders.
    async fn run(
        self,
        sender: Option<usize>,
        observer: bool,
        (node, nodes): (usize, usize),
        mut pace: Pace,
        counters: Arc<Counters>,
    ) -> anyhow::Result<ClientEnd> {
        let mut tally = Tally {
            sender,
            observer,
            node,
            nodes,
            latency: Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            cross_node: Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            received: 0,
            last_arrival: 0,
        };
        let mut seq = 0u64;
        let now = || counters.start.elapsed().as_micros() as u64;
        let end = |tally: Tally, dropped: Option<Option<String>>| {
            Ok(ClientEnd {
                latency: tally.latency,
                cross_node: tally.cross_node,
                dropped,
            })
        };
        match self {
            Client::Lines {
                reader,
                mut writer,
                irc_channel,
            } => {
                // Lines are taken from raw reads in bulk (what connecting
                // left buffered first), without a String per line.
                let reader = reader.into_inner();
                let mut buf = BytesMut::from(reader.buffer());
                let mut reader = reader.into_inner();
                // What is still to be written. Writing is a branch of its
                // own, so a client whose writes wait keeps reading, as a
                // person's client does.
                let mut outgoing = BytesMut::new();
                let mut unflushed = false;
                // The last line that was not a payload: a goodbye says why.
                let mut last_words: Option<String> = None;
                loop {
                    let may_send = sender.is_some() && counters.sending.load(Ordering::Relaxed);
                    buf.reserve(READ_CHUNK);
                    tokio::select! {
                        _ = counters.stop.cancelled() => return end(tally, None),
                        read = reader.read_buf(&mut buf) => {
                            let count = match read {
                                Ok(count) => count,
                                Err(error) => {
                                    let said = last_words.unwrap_or_else(|| error.to_string());
                                    return end(tally, Some(Some(said)));
                                }
                            };
                            if count == 0 {
                                // A goodbye may lack its newline.
                                let rest = String::from_utf8_lossy(&buf).trim().to_string();
                                let said = Some(rest).filter(|rest| !rest.is_empty()).or(last_words);
                                return end(tally, Some(said));
                            }
                            let Some(last_newline) = memchr::memrchr(b'\n', &buf) else { continue };
                            let lines = buf.split_to(last_newline + 1);
                            let arrived = now();
                            let mut start = 0;
                            for newline in memchr::memchr_iter(b'\n', &lines) {
                                let line = &lines[start..newline];
                                start = newline + 1;
                                if let (Some(_), Some(rest)) = (&irc_channel, line.strip_prefix(b"PING ")) {
                                    outgoing.extend_from_slice(&[&b"PONG "[..], rest, b"\n"].concat());
                                }
                                if !tally.record(line, arrived, &counters) && is_goodbye(line) {
                                    last_words = Some(String::from_utf8_lossy(line).into_owned());
                                }
                            }
                            tally.flush(&counters);
                        },
                        // Once written, flushed: TLS may keep what the
                        // socket did not take, and a sender waiting on its
                        // window must not wait on that.
                        written = async {
                            if outgoing.is_empty() {
                                writer.flush().await.map(|()| false)
                            } else {
                                writer.write_buf(&mut outgoing).await.map(|_| true)
                            }
                        }, if !outgoing.is_empty() || unflushed => {
                            match written {
                                Ok(wrote) => unflushed = wrote,
                                Err(error) => return end(tally, Some(Some(last_words.unwrap_or_else(|| error.to_string())))),
                            }
                        }
                        _ = pace.ready(seq), if may_send && outgoing.is_empty() => {
                            // Back to back, a few lines a write: the load
                            // generator must stay cheaper than the server.
                            let lines = if matches!(pace, Pace::BackToBack) { BACK_TO_BACK_LINES } else { 1 };
                            for _ in 0..lines {
                                let text = payload(sender.unwrap_or(0), seq, now());
                                match &irc_channel {
                                    Some(channel) => outgoing.extend_from_slice(format!("PRIVMSG {channel} :{text}\r\n").as_bytes()),
                                    None => outgoing.extend_from_slice(format!("{text}\n").as_bytes()),
                                }
                                counters.sent.fetch_add(1, Ordering::Relaxed);
                                seq += 1;
                            }
                        }
                    }
                }
            }
            Client::Ws(mut socket) => {
                let mut last_words: Option<String> = None;
                loop {
                    let may_send = sender.is_some() && counters.sending.load(Ordering::Relaxed);
                    tokio::select! {
                        _ = counters.stop.cancelled() => return end(tally, None),
                        frame = socket.next() => match frame {
                            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                                if !tally.record(text.as_bytes(), now(), &counters) && is_goodbye(text.as_bytes()) {
                                    last_words = Some(text.to_string());
                                }
                                tally.flush(&counters);
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => return end(tally, Some(last_words)),
                        },
                        _ = pace.ready(seq), if may_send => {
                            let text = payload(sender.unwrap_or(0), seq, now());
                            let command = serde_json::to_string(&ClientCommand::Say { text, room: None })?;
                            counters.sent.fetch_add(1, Ordering::Relaxed);
                            socket.send(tokio_tungstenite::tungstenite::Message::Text(command.into())).await?;
                            seq += 1;
                        }
                    }
                }
            }
            Client::Udp {
                socket,
                mut next_id,
            } => {
                let mut buf = vec![0u8; 65_536];
                loop {
                    let may_send = sender.is_some() && counters.sending.load(Ordering::Relaxed);
                    tokio::select! {
                        _ = counters.stop.cancelled() => return end(tally, None),
                        received = socket.recv(&mut buf) => {
                            let len = received?;
                            let datagram = &buf[..len];
                            // The server ended the session: its `bye` says why.
                            if !tally.record(datagram, now(), &counters) && is_goodbye(datagram) {
                                let said = String::from_utf8_lossy(datagram).into_owned();
                                if said.contains("\"type\":\"bye\"") {
                                    return end(tally, Some(Some(said)));
                                }
                            }
                            tally.flush(&counters);
                        }
                        _ = pace.ready(seq), if may_send => {
                            let text = payload(sender.unwrap_or(0), seq, now());
                            let datagram = ClientDatagram {
                                id: next_id,
                                cmd: Some(ClientCommand::Say { text, room: None }),
                                proof: None,
                                pad: None,
                            };
                            counters.sent.fetch_add(1, Ordering::Relaxed);
                            socket.send(&datagram.encode()).await?;
                            next_id += 1;
                            seq += 1;
                        }
                    }
                }
            }
        }
    }
}

/// A byte stream to the server, whichever way it is carried.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type ReadSide = Box<dyn AsyncRead + Unpin + Send>;
type WriteSide = Box<dyn AsyncWrite + Unpin + Send>;

/// A client's connection: plain TCP, or TLS over it.
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Transport {
    async fn open(addr: SocketAddr, tls: Option<&TlsConnector>) -> anyhow::Result<Transport> {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // A sender's own kernel buffer would otherwise grow to
        // megabytes of lines waiting behind a server that paces
        // it, and their wait would count as the server's latency.
        socket.set_send_buffer_size(SEND_BUFFER)?;
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        let Some(tls) = tls else {
            return Ok(Transport::Plain(stream));
        };
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let stream = tls
            .connect(name, stream)
            .await
            .context("the TLS handshake")?;
        Ok(Transport::Tls(Box::new(stream)))
    }

    /// Reading and writing apart. Plain TCP splits without a lock; TLS
    /// keeps one session, so its halves share it.
    fn into_split(self) -> (ReadSide, WriteSide) {
        match self {
            Transport::Plain(stream) => {
                let (reader, writer) = stream.into_split();
                (Box::new(reader), Box::new(writer))
            }
            Transport::Tls(stream) => {
                let (reader, writer) = tokio::io::split(stream);
                (Box::new(reader), Box::new(writer))
            }
        }
    }

    fn into_stream(self) -> Box<dyn Stream> {
        match self {
            Transport::Plain(stream) => Box::new(stream),
            Transport::Tls(stream) => Box::new(stream),
        }
    }
}

/// TLS that takes any certificate: the bench measures what encryption
/// costs the server, not whom to trust (that is `sockchat connect`'s).
fn unchecked_tls() -> anyhow::Result<TlsConnector> {
    let policy = TrustPolicy {
        authorities: Authorities::Nothing,
        expected: None,
    };
    let trust = ServerTrust::new(policy, false)?;
    Ok(TlsConnector::from(ServerTrust::client_config(&trust)?))
}

/// How a client's run ended.
struct ClientEnd {
    latency: Histogram<u64>,
    cross_node: Histogram<u64>,
    /// The server closed the connection (or it failed) before the end:
    /// what it said last, if anything.
    dropped: Option<Option<String>>,
}

/// Lines a back-to-back sender writes at a time.
const BACK_TO_BACK_LINES: u64 = 8;

/// When a sender may send its next message.
enum Pace {
    /// At a fixed rate.
    Rate(tokio::time::Interval),
    /// As fast as the server delivers: at most `WINDOW` messages not yet
    /// seen by the observer (a closed loop, so queues cannot run away).
    Window(watch::Receiver<u64>),
    /// As fast as TCP takes the bytes (an open loop).
    BackToBack,
    /// Not a sender.
    Never,
}

/// Messages a closed-loop sender may have on their way.
const WINDOW: u64 = 16;

/// How long a closed-loop sender waits for progress before sending anyway.
const STALL: Duration = Duration::from_millis(200);

impl Pace {
    /// Resolves when message number `seq` may go. Cancel-safe.
    async fn ready(&mut self, seq: u64) {
        match self {
            Pace::Rate(interval) => {
                interval.tick().await;
            }
            Pace::Window(delivered) => loop {
                if seq < *delivered.borrow_and_update() + WINDOW {
                    return;
                }
                // A server that loses or mangles messages (ncat relays raw
                // chunks, which can cut a line) would stall the loop; after
                // a while without progress, send anyway.
                match tokio::time::timeout(STALL, delivered.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => std::future::pending::<()>().await,
                    Err(_) => return,
                }
            },
            Pace::BackToBack => {}
            Pace::Never => std::future::pending().await,
        }
    }
}

/// Whether a line that is not a payload is a server's goodbye or error,
/// worth keeping as a client's last words: sockchat's `* bye:` and `!`
/// lines and JSON `bye`/`error` events, IRC's `ERROR`.
fn is_goodbye(line: &[u8]) -> bool {
    line.starts_with(b"* bye")
        || line.starts_with(b"! ")
        || line.starts_with(b"ERROR")
        || memchr::memmem::find(line, b"\"type\":\"bye\"").is_some()
        || memchr::memmem::find(line, b"\"type\":\"error\"").is_some()
}

/// The commands that take a sockchat client from the default room to the
/// bench's: the join first, so the default room never hears of it.
fn move_to(room: &str, default: &str) -> [ClientCommand; 2] {
    [
        ClientCommand::Join {
            room: room.to_string(),
        },
        ClientCommand::Part {
            room: Some(default.to_string()),
            reason: None,
        },
    ]
}

/// A refusal at the door, with what to change.
fn refused(said: &str) -> anyhow::Error {
    let (reason, advice) = Departures::classify(Some(said));
    anyhow::anyhow!("{reason} ({said}); {advice}")
}

/// Writes `text` and sends it on: TLS keeps what the socket would not
/// take at once until flushed.
async fn send(writer: &mut WriteSide, text: &str) -> std::io::Result<()> {
    writer.write_all(text.as_bytes()).await?;
    writer.flush().await
}

/// Reads lines until one contains `needle` (answering IRC pings); returns it.
async fn wait_for_line(
    reader: &mut tokio::io::Lines<BufReader<ReadSide>>,
    writer: &mut WriteSide,
    needle: &str,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = tokio::time::timeout_at(deadline, reader.next_line())
            .await
            .with_context(|| format!("no {needle:?} from the server in time"))??
            .context("the server closed the connection")?;
        if let Some(rest) = line.strip_prefix("PING ") {
            send(writer, &format!("PONG {rest}\r\n")).await?;
        }
        if line.contains(needle) {
            return Ok(line);
        }
    }
}

/// One structured UDP request, retried (and sent again with the proof
/// when the server asks for it); returns the events of its answer.
async fn udp_request(
    socket: &UdpSocket,
    id: u64,
    cmd: Option<ClientCommand>,
) -> anyhow::Result<Vec<ServerEvent>> {
    let mut datagram = ClientDatagram {
        id,
        cmd,
        proof: None,
        pad: None,
    };
    let mut buf = vec![0u8; 65_536];
    for _ in 0..10 {
        socket.send(&datagram.encode()).await?;
        let deadline = Instant::now() + Duration::from_millis(500);
        while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            let len = received?;
            match serde_json::from_slice::<ServerDatagram>(&buf[..len]) {
                Ok(ServerDatagram::Ack { ack, events }) if ack == id => return Ok(events),
                Ok(ServerDatagram::Retry { ack, token }) if ack == id => {
                    datagram.proof = Some(token);
                    break;
                }
                _ => {}
            }
        }
    }
    bail!("no answer over UDP")
}

/// Resident memory of a process, from /proc (Linux).
/// The resident memory of `pids` together; none without pids, or if one
/// cannot be read.
fn rss_of(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|pid| read_rss_kib(*pid)).sum()
}

/// Each of `pids`' CPU time so far, if it can be read.
fn cpu_of(pids: &[u32]) -> Vec<Option<f64>> {
    pids.iter().map(|pid| read_cpu_seconds(*pid)).collect()
}

fn read_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User plus system CPU time of a process, from /proc (Linux).
fn read_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at ')'.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Some(ticks as f64 / 100.0)
}

impl BenchReport {
    /// What was lost, in words, if anything was.
    pub fn what_was_lost(&self) -> Option<String> {
        let lost = self
            .deliveries_expected
            .saturating_sub(self.deliveries_received);
        match (lost, self.clients_dropped) {
            (0, 0) => None,
            (lost, 0) => Some(format!(
                "{lost} of {} deliveries were lost",
                self.deliveries_expected
            )),
            (lost, dropped) => Some(format!(
                "{lost} of {} deliveries were lost and {dropped} client(s) were dropped",
                self.deliveries_expected
            )),
        }
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let over = if self.tls { " over TLS" } else { "" };
        writeln!(f, "wire                  {:?}{over}", self.wire)?;
        writeln!(
            f,
            "clients connected     {} of {} in {:.2} s",
            self.clients_connected, self.clients_wanted, self.connect_seconds
        )?;
        writeln!(f, "clients dropped       {}", self.clients_dropped)?;
        for gone in &self.departures {
            writeln!(f, "  {} {}: {}", gone.clients, gone.reason, gone.said)?;
            if !gone.advice.is_empty() {
                writeln!(f, "    {}", gone.advice)?;
            }
        }
        writeln!(f, "senders               {}", self.senders)?;
        writeln!(f, "seconds               {:.1}", self.seconds)?;
        writeln!(f, "messages sent         {}", self.messages_sent)?;
        writeln!(f, "deliveries expected   {}", self.deliveries_expected)?;
        writeln!(f, "deliveries received   {}", self.deliveries_received)?;
        writeln!(f, "loss                  {:.3} %", self.loss * 100.0)?;
        writeln!(f, "deliveries/s          {:.0}", self.deliveries_per_second)?;
        let l = &self.latency_ms;
        writeln!(
            f,
            "latency ms            p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            l.p50, l.p90, l.p99, l.max
        )?;
        if let Some(l) = &self.latency_cross_node_ms {
            writeln!(
                f,
                "  between servers     p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                l.p50, l.p90, l.p99, l.max
            )?;
        }
        if let Some(server) = &self.server {
            writeln!(
                f,
                "server cpu seconds    {:.2} ({:.0} ns per delivery)",
                server.cpu_seconds, server.cpu_ns_per_delivery
            )?;
            if server.cpu_seconds_by_pid.len() > 1 {
                for (pid, cpu) in &server.cpu_seconds_by_pid {
                    writeln!(f, "  pid {pid:<16} {cpu:.2}")?;
                }
            }
            writeln!(
                f,
                "server rss KiB        {} before, {} connected, {} after ({:.1} KiB per connection)",
                server.rss_before_kib, server.rss_connected_kib, server.rss_after_kib, server.kib_per_connection
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_payloads(text: &str) -> Vec<(usize, u64, u64)> {
        let mut found = Vec::new();
        for_each_payload(text.as_bytes(), |sender, seq, micros| {
            found.push((sender, seq, micros))
        });
        found
    }

    #[test]
    fn departures_are_grouped_by_what_the_server_said() {
        let flood = "* bye: excess flood: more than 20 messages a second";
        let groups = Departures::tally([
            Some(flood.to_string()),
            None,
            Some(flood.to_string()),
            Some("! too many connections from your address (at most 100)".into()),
            Some(r#"{"type":"bye","reason":"sendq exceeded","code":"sendq_exceeded"}"#.into()),
        ]);
        let seen: Vec<_> = groups
            .iter()
            .map(|group| (group.reason.as_str(), group.clients))
            .collect();
        assert_eq!(
            seen,
            [
                ("flooding", 2),
                ("closed without a word", 1),
                ("refused: too many from one address", 1),
                ("slow: fell behind", 1),
            ]
        );
        assert!(groups[0].advice.contains("--max-rate 0"));
        assert_eq!(groups[0].said, flood);
    }

    #[test]
    fn payloads_are_found_in_any_framing() {
        let text = payload(3, 17, 123_456);
        assert_eq!(text, "bench s3 q17 t123456");
        assert_eq!(
            parse_payloads(&format!("[lobby] guest-1: {text}")),
            [(3, 17, 123_456)]
        );
        assert_eq!(
            parse_payloads(&format!(":b!u@h PRIVMSG #bench :{text}\r")),
            [(3, 17, 123_456)]
        );
        let push = format!(
            r#"{{"type":"push","seq":1,"events":[{{"text":"{text}"}},{{"text":"{}"}}]}}"#,
            payload(4, 1, 9)
        );
        assert_eq!(parse_payloads(&push), [(3, 17, 123_456), (4, 1, 9)]);
        assert!(parse_payloads(&format!("(history) [lobby] x: {text}")).is_empty());
        assert!(parse_payloads("no payload").is_empty());
    }
}
