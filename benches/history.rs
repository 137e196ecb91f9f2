//! What durable history costs: the same chat load against a server with
//! history off and with history on (SQLite, group commit), side by side.
//!
//! `cargo bench --bench history` runs each twice, alternating, on loopback,
//! and prints deliveries a second and the ratio. The load is bounded:
//! SENDERS x MESSAGES messages, each delivered to every one of CLIENTS.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sockchat::hub::HubConfig;
use sockchat::server::{HistoryConfig, ServeConfig, Server};
use sockchat::session::Limits;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CLIENTS: usize = 50;
const SENDERS: usize = 10;
const MESSAGES: usize = 2000;
/// Gives up on a run that takes longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut results: Vec<(&str, f64)> = Vec::new();
    for round in 0..2 {
        for history in [false, true] {
            let db = history.then(|| dir.path().join(format!("bench-{round}.db")));
            let rate = run(db).await;
            let label = if history { "history on" } else { "history off" };
            println!("round {round}: {label:11} {rate:>12.0} deliveries/s");
            results.push((label, rate));
        }
    }
    let best = |label: &str| {
        results
            .iter()
            .filter(|(name, _)| *name == label)
            .map(|(_, rate)| *rate)
            .fold(0.0, f64::max)
    };
    let (off, on) = (best("history off"), best("history on"));
    println!();
    println!("| history | deliveries/s (best of 2) | ratio to off |");
    println!("|---|---|---|");
    println!("| off | {off:.0} | 1.00 |");
    println!("| on  | {on:.0} | {:.2} |", on / off);
}

/// One run: CLIENTS members, SENDERS of them sending MESSAGES each as fast
/// as the server takes them; returns deliveries a second.
async fn run(db: Option<std::path::PathBuf>) -> f64 {
    let config = ServeConfig {
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        udp: None,
        web: None,
        tls: None,
        web_tls: false,
        certificate: None,
        irc: None,
        irc_tls: None,
        motd: None,
        web_origins: Vec::new(),
        web_hosts: Vec::new(),
        history: HistoryConfig {
            db,
            ..HistoryConfig::default()
        },
        hub: HubConfig {
            sendq: 0,
            ..HubConfig::default()
        },
        limits: Limits {
            max_rate: 0,
            ..Limits::default()
        },
        cluster: None,
    };
    let server = Server::bind(config).await.expect("bind");
    let addr = server.listening()[0].addr;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let mut receivers = Vec::new();
    for _ in 0..CLIENTS {
        receivers.push(connect(addr).await);
    }
    let expected = SENDERS * MESSAGES;
    let start = Instant::now();
    let counting: Vec<_> = receivers
        .into_iter()
        .map(|mut lines| {
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < expected {
                    match lines.next_line().await {
                        Ok(Some(line)) if line.contains(": load ") => seen += 1,
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
                seen
            })
        })
        .collect();
    for sender in 0..SENDERS {
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            let batch: String = (0..MESSAGES)
                .map(|index| format!("load {sender}-{index}\n"))
                .collect();
            let _ = stream.write_all(batch.as_bytes()).await;
            // Keep reading so this sender never counts as a slow reader.
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut stream, &mut sink).await;
        });
    }
    let mut delivered = 0;
    for counter in counting {
        delivered += tokio::time::timeout(RUN_LIMIT, counter)
            .await
            .expect("the run finishes in time")
            .expect("counter");
    }
    let elapsed = start.elapsed();
    assert_eq!(delivered, CLIENTS * expected, "every delivery made");
    let _ = stop.send(());
    let _ = serving.await;
    delivered as f64 / elapsed.as_secs_f64()
}

async fn connect(addr: SocketAddr) -> tokio::io::Lines<BufReader<TcpStream>> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let mut lines = BufReader::new(stream).lines();
    lines.next_line().await.expect("welcome").expect("welcome");
    lines
}
