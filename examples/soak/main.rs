//! The soak: a server under churn for a set time, watched for leaks and
//! for lost messages. Run it with `scripts/soak.sh [SECONDS]`.
//!
//! - Three bystanders, one per door (TCP JSON lines, WebSocket, UDP), sit
//!   in `#soak` the whole time. Each says a numbered line five times a
//!   second, and each checks that every other's lines arrive, each once,
//!   in order.
//! - Churners come and go on every door all along: they chat and quit,
//!   vanish without a word, reset their connection, read nothing while
//!   asking for a lot (slow readers), send what the server must refuse, or
//!   fall silent on UDP until they expire.
//! - Before the churn (after a warm-up round) and after it, once the
//!   churners are gone, the server's tasks, file descriptors and resident
//!   memory are read from `/metrics`: they must come back to where they
//!   were.
//!
//! Exits non-zero, saying why, if any check fails.

mod churn;
mod link;
mod watch;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::Value;
use tokio::sync::watch as signal;

use link::{Door, Link};
use watch::{Figures, Server};

/// The room the bystanders sit in.
const ROOM: &str = "soak";
/// How often each bystander speaks.
const TALK_EVERY: Duration = Duration::from_millis(200);
/// How long a churned UDP member may stay silent before it has left.
const UDP_EXPIRY_SECS: u64 = 3;
/// Resident memory the server may keep beyond its baseline after the
/// churn (allocator caches, the history database's pages).
const RSS_SLACK: i64 = 16 * 1024 * 1024;

#[derive(Debug, Parser)]
struct Args {
    /// The `sockchat` binary to soak.
    #[arg(long)]
    server: PathBuf,
    /// How long to churn, in seconds (a warm-up round comes first).
    #[arg(long, default_value_t = 1800)]
    seconds: u64,
    /// Churners on each door at once.
    #[arg(long, default_value_t = 8)]
    churners: usize,
}

/// What a bystander saw.
#[derive(Debug, Default)]
struct Sightings {
    /// The next number expected from each bystander.
    next: HashMap<String, u64>,
    /// Each bystander's closing line seen.
    ended: Vec<String>,
    received: u64,
    problems: Vec<String>,
}

impl Sightings {
    fn see(&mut self, event: &Value) {
        // Nothing a bystander does is wrong: an error to one is a fault.
        if event["type"] == "error" && self.problems.len() < 10 {
            self.problems.push(format!("told {event}"));
        }
        if event["type"] != "message" || event["room"] != ROOM {
            return;
        }
        let text = event["text"].as_str().unwrap_or_default();
        let mut words = text.split(' ');
        let (Some("soak"), Some(from), Some(what)) = (words.next(), words.next(), words.next())
        else {
            return;
        };
        if what == "end" {
            self.ended.push(from.to_string());
            return;
        }
        let Ok(number) = what.parse::<u64>() else {
            return;
        };
        self.received += 1;
        let next = self.next.entry(from.to_string()).or_insert(0);
        if number != *next && self.problems.len() < 10 {
            self.problems
                .push(format!("from {from}: got line {number}, expected {next}"));
        }
        *next = number + 1;
    }
}

/// Waits for `signal` to be raised (the guard is dropped at once, so the
/// waiting future stays `Send`).
async fn signalled(signal: &mut signal::Receiver<bool>) {
    let _ = signal.wait_for(|raised| *raised).await;
}

/// What a bystander reports at the end.
#[derive(Debug)]
struct Verdict {
    nick: String,
    said: u64,
    sightings: Sightings,
    pushes_lost: u64,
}

/// A bystander on `door`: joins, waits for `go`, talks until `stop`, then
/// says its last line and reads until every bystander's last line came (or
/// 30 s passed), reports, and stays connected until `close`.
async fn bystander(
    door: Door,
    addrs: link::Addrs,
    mut go: signal::Receiver<bool>,
    mut stop: signal::Receiver<bool>,
    mut close: signal::Receiver<bool>,
    joined: tokio::sync::mpsc::Sender<()>,
    verdict: tokio::sync::oneshot::Sender<Verdict>,
) -> std::io::Result<()> {
    let nick = format!("by_{}", door.name());
    let everyone: Vec<String> = Door::ALL
        .iter()
        .map(|door| format!("by_{}", door.name()))
        .collect();
    let mut link = Link::open(door, &addrs).await?;
    link.send(Some(link::nick(&nick))).await?;
    link.send(Some(link::join(ROOM))).await?;
    let mut sightings = Sightings::default();
    // In the room once our own join is announced.
    let deadline = Instant::now() + Duration::from_secs(10);
    'joining: while Instant::now() < deadline {
        for event in link.events(Duration::from_millis(500)).await? {
            if event["type"] == "join" && event["nick"] == nick.as_str() && event["room"] == ROOM {
                break 'joining;
            }
        }
        link.send(None).await?;
    }
    let _ = joined.send(()).await;
    signalled(&mut go).await;
    let mut said = 0u64;
    let mut ticker = tokio::time::interval(TALK_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                link.send(Some(link::say(ROOM, &format!("soak {nick} {said}")))).await?;
                said += 1;
            }
            _ = signalled(&mut stop) => break,
            events = link.events(TALK_EVERY) => {
                for event in events? {
                    sightings.see(&event);
                }
            }
        }
    }
    link.send(Some(link::say(ROOM, &format!("soak {nick} end"))))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !everyone.iter().all(|by| sightings.ended.contains(by)) {
        for event in link.events(Duration::from_millis(250)).await? {
            sightings.see(&event);
        }
        link.send(None).await?;
    }
    let pushes_lost = link.pushes_lost();
    let _ = verdict.send(Verdict {
        nick,
        said,
        sightings,
        pushes_lost,
    });
    // Still a member (a UDP one keeps polling) until the figures are read.
    loop {
        tokio::select! {
            _ = signalled(&mut close) => break,
            events = link.events(Duration::from_secs(1)) => { events?; }
        }
        link.send(None).await?;
    }
    link.send(Some(link::quit())).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let expiry = UDP_EXPIRY_SECS.to_string();
    let mut server = Server::start(
        &args.server,
        dir.path(),
        &[
            "--max-per-ip",
            "1000",
            "--udp-expiry",
            &expiry,
            "--name",
            "soak",
        ],
    )
    .await?;
    let addrs = server.addrs;
    println!(
        "soak: server at tcp {} udp {} web {}",
        addrs.tcp, addrs.udp, addrs.web
    );

    let (go_tx, go) = signal::channel(false);
    let (stop_tx, stop) = signal::channel(false);
    let (close_tx, close) = signal::channel(false);
    let (joined_tx, mut joined) = tokio::sync::mpsc::channel(3);
    let mut verdicts = Vec::new();
    let mut bystanders = Vec::new();
    for door in Door::ALL {
        let (verdict_tx, verdict) = tokio::sync::oneshot::channel();
        verdicts.push(verdict);
        bystanders.push(tokio::spawn(bystander(
            door,
            addrs,
            go.clone(),
            stop.clone(),
            close.clone(),
            joined_tx.clone(),
            verdict_tx,
        )));
    }
    for _ in Door::ALL {
        tokio::time::timeout(Duration::from_secs(20), joined.recv())
            .await
            .map_err(|_| anyhow::anyhow!("the bystanders did not join within 20 s"))?;
    }
    go_tx.send(true)?;

    // A warm-up round, so the baseline includes what the first churn
    // leaves for good (the allocator's arenas, the database's pages).
    let settle_patience = Duration::from_secs(UDP_EXPIRY_SECS + 30);
    let warm_up = Duration::from_secs((args.seconds / 6).clamp(5, 60));
    let warm = churn::run(addrs, args.churners, warm_up, 0).await;
    let settled = server.settle(3, i64::MAX, settle_patience).await?;
    // Bystanders only, and whatever tasks the server keeps for itself.
    let baseline = server.settle(3, settled.tasks, settle_patience).await?;
    println!("soak: warm-up {warm}; baseline {baseline}");

    let started = Instant::now();
    let sampler = {
        let (done_tx, mut done) = signal::channel(false);
        let task = tokio::spawn(async move {
            let mut peak = Figures::default();
            let mut ticker = tokio::time::interval(Duration::from_secs(2));
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        if let Ok(figures) = watch::figures(addrs.web).await {
                            peak = peak.max(figures);
                        }
                    }
                    _ = signalled(&mut done) => return peak,
                }
            }
        });
        (done_tx, task)
    };
    let churned = churn::run(addrs, args.churners, Duration::from_secs(args.seconds), 1).await;
    let elapsed = started.elapsed();
    sampler.0.send(true)?;
    let peak = sampler.1.await?;
    stop_tx.send(true)?;

    let mut problems = Vec::new();
    let mut said_total = 0;
    for verdict in verdicts {
        let verdict = tokio::time::timeout(Duration::from_secs(60), verdict)
            .await
            .map_err(|_| anyhow::anyhow!("a bystander gave no verdict within 60 s"))??;
        said_total += verdict.said;
        println!(
            "soak: {} said {} lines and received {} bystander lines",
            verdict.nick, verdict.said, verdict.sightings.received
        );
        for problem in &verdict.sightings.problems {
            problems.push(format!("{}: {problem}", verdict.nick));
        }
        let missing: Vec<_> = Door::ALL
            .iter()
            .map(|door| format!("by_{}", door.name()))
            .filter(|by| !verdict.sightings.ended.contains(by))
            .collect();
        if !missing.is_empty() {
            problems.push(format!("{}: no last line from {missing:?}", verdict.nick));
        }
        if verdict.pushes_lost > 0 {
            problems.push(format!(
                "{}: {} pushes lost",
                verdict.nick, verdict.pushes_lost
            ));
        }
    }
    let after = server.settle(3, baseline.tasks, settle_patience).await?;
    println!("soak: churned {:.0} s: {churned}", elapsed.as_secs_f64());
    println!("soak: peak {peak}");
    println!("soak: after {after}");
    let drops = watch::drops(addrs.web).await?;
    let drops: Vec<String> = drops
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    println!("soak: drops by reason: {}", drops.join(", "));
    println!(
        "soak: bystanders said {said_total} lines; each should see all of them, in order, once"
    );
    if after.members != baseline.members {
        problems.push(format!(
            "{} members after the churn, not {}",
            after.members, baseline.members
        ));
    }
    if after.tasks > baseline.tasks {
        problems.push(format!(
            "{} tasks after the churn, {} before",
            after.tasks, baseline.tasks
        ));
    }
    if after.fds > baseline.fds {
        problems.push(format!(
            "{} descriptors after the churn, {} before",
            after.fds, baseline.fds
        ));
    }
    if after.rss > baseline.rss + RSS_SLACK {
        problems.push(format!(
            "resident memory grew from {} to {} bytes",
            baseline.rss, after.rss
        ));
    }
    if churned.unexpected * 100 > churned.episodes.max(1) {
        problems.push(format!(
            "{} of {} churn episodes failed unexpectedly (over 1 %)",
            churned.unexpected, churned.episodes
        ));
    }
    if !server.is_running() {
        problems.push("the server exited during the soak".into());
    }

    close_tx.send(true)?;
    for bystander in bystanders {
        if let Ok(Err(error)) = bystander.await {
            problems.push(format!("a bystander's link failed: {error}"));
        }
    }
    let status = server.stop().await?;
    if !status.success() {
        problems.push(format!("the server ended with {status} after SIGTERM"));
    }
    let log = std::fs::read_to_string(dir.path().join("server.log"))?;
    for line in log.lines().filter(|line| line.contains("panicked")) {
        problems.push(format!("server log: {line}"));
    }
    if problems.is_empty() {
        println!("soak: passed");
        Ok(())
    } else {
        for problem in &problems {
            eprintln!("soak: FAILED: {problem}");
        }
        std::process::exit(1);
    }
}
