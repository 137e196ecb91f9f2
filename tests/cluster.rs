//! Three sockchat nodes sharing rooms over a real nats-server (JetStream)
//! on loopback: one room across nodes, one order per room, history the
//! same on every node.

mod common;

use common::nats::NatsServer;
use common::process::ServerProcess;
use common::{config, config_with_history, start, Client, TestServer};
use serde_json::Value;
use sockchat::cluster::ClusterConfig;
use sockchat::server::ServeConfig;

/// A node named `node` of the cluster at `nats`.
async fn node(nats: &NatsServer, node: &str) -> TestServer {
    start(clustered(config(), nats, node)).await
}

/// `config`, as the node `node` of the cluster at `nats`.
fn clustered(mut config: ServeConfig, nats: &NatsServer, node: &str) -> ServeConfig {
    config.cluster = Some(ClusterConfig {
        urls: vec![nats.url.clone()],
        node: node.to_string(),
        replicas: 1,
        max_age: None,
        max_per_room: None,
        lease: sockchat::cluster::DEFAULT_LEASE,
    });
    config
}

/// Two nodes with a 2 s lease (every node of a cluster is given the same):
/// `n2` in this process, and `doomed`, a `sockchat serve` process to kill.
async fn short_lease_pair(nats: &NatsServer) -> (TestServer, ServerProcess) {
    let mut config = clustered(config(), nats, "n2");
    config.cluster.as_mut().unwrap().lease = std::time::Duration::from_secs(2);
    let n2 = start(config).await;
    let doomed = ServerProcess::start(&[
        "--cluster",
        &nats.url,
        "--node",
        "doomed",
        "--cluster-lease",
        "2",
        "--irc",
        "off",
    ])
    .await;
    (n2, doomed)
}

/// The next `count` lines of `room` a member reads.
async fn room_lines(member: &mut Client, room: &str, count: usize) -> Vec<String> {
    let prefix = format!("[{room}] ");
    let mut lines = Vec::new();
    while lines.len() < count {
        let line = member.line().await;
        if line.starts_with(&prefix) {
            lines.push(line);
        }
    }
    lines
}

/// A JSON-mode member's answer to `command`: the first event of `kind`.
async fn ask(member: &mut Client, command: &str, kind: &str) -> Value {
    member.send(command).await;
    let needle = format!(r#""type":"{kind}""#);
    serde_json::from_str(&member.expect(&needle).await).unwrap()
}

/// The ids and texts of the messages in a `history` or `search_results`.
fn ids_and_texts(answer: &Value) -> Vec<(u64, String)> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| {
            let text = message["text"].as_str().unwrap().to_string();
            (message["id"].as_u64().unwrap(), text)
        })
        .collect()
}

#[tokio::test]
async fn a_message_said_on_any_node_reaches_the_room_on_every_node_once() {
    let nats = NatsServer::start().await;
    let nodes = [
        node(&nats, "n1").await,
        node(&nats, "n2").await,
        node(&nats, "n3").await,
    ];
    let mut alice = nodes[0].client_named("alice").await;
    let mut bob = nodes[1].client_named("bob").await;
    let mut carol = nodes[2].client_named("carol").await;
    alice.send("/join #plans").await;
    bob.send("/join #plans").await;
    carol.send("/join #plans").await;
    let mut seen = [Vec::new(), Vec::new(), Vec::new()];
    let mut members = [alice, bob, carol];
    let said = ["hello from one", "你好 from two", "hi from three"];
    for (at, text) in said.iter().enumerate() {
        members[at].send(text).await;
        // Each sender sees its own line come back: its echo, from the log.
        while !seen[at]
            .last()
            .is_some_and(|line: &String| line.ends_with(text))
        {
            let line = members[at].line().await;
            if line.starts_with("[plans] ") {
                seen[at].push(line);
            }
        }
    }
    // Every member sees all three, in one order, and nothing twice.
    for (at, member) in members.iter_mut().enumerate() {
        while seen[at].len() < 3 {
            let line = member.line().await;
            if line.starts_with("[plans] ") {
                seen[at].push(line);
            }
        }
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1], seen[2]);
    assert_eq!(
        seen[0],
        [
            "[plans] alice: hello from one",
            "[plans] bob: 你好 from two",
            "[plans] carol: hi from three"
        ]
    );
    // Nothing comes twice: the next line everyone reads is the next said.
    members[1].send("the end").await;
    for member in &mut members {
        assert_eq!(
            room_lines(member, "plans", 1).await,
            ["[plans] bob: the end"]
        );
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn concurrent_senders_on_every_node_make_one_order_seen_everywhere() {
    const EACH: usize = 30;
    let nats = NatsServer::start().await;
    let nodes = [
        node(&nats, "n1").await,
        node(&nats, "n2").await,
        node(&nats, "n3").await,
    ];
    let mut senders = Vec::new();
    let mut readers = Vec::new();
    for (at, node) in nodes.iter().enumerate() {
        let mut sender = node.client_named(&format!("talker{at}")).await;
        sender.send("/join #race").await;
        senders.push(sender);
        let mut reader = node.client_named(&format!("reader{at}")).await;
        reader.send("/join #race").await;
        reader.expect("joined #race").await;
        readers.push(reader);
    }
    for sender in &mut senders {
        sender.expect("joined #race").await;
    }
    // All at once: each node's talker sends without waiting for anyone.
    let talking = senders.into_iter().enumerate().map(|(at, mut sender)| {
        tokio::spawn(async move {
            for n in 0..EACH {
                sender.send(&format!("t{at} says {n}")).await;
            }
            sender
        })
    });
    let senders = futures_util::future::join_all(talking).await;
    let mut orders = Vec::new();
    for reader in &mut readers {
        orders.push(room_lines(reader, "race", 3 * EACH).await);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[1], orders[2]);
    // Each talker's lines keep the order it said them in.
    for at in 0..3 {
        let own: Vec<_> = orders[0]
            .iter()
            .filter(|line| line.starts_with(&format!("[race] talker{at}:")))
            .cloned()
            .collect();
        let said: Vec<_> = (0..EACH)
            .map(|n| format!("[race] talker{at}: t{at} says {n}"))
            .collect();
        assert_eq!(own, said);
    }
    drop(senders);
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_node_that_was_down_catches_up_and_history_is_the_same_everywhere() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("n3.db");
    let n1 = node(&nats, "n1").await;
    let n2 = node(&nats, "n2").await;
    let n3 = start(clustered(config_with_history(&db), &nats, "n3")).await;
    let mut watcher = n3.client_named("watcher").await;
    let mut alice = n1.client_named("alice").await;
    alice.send("before the outage").await;
    alice.expect("before the outage").await;
    watcher.expect("before the outage").await;
    drop(watcher);
    n3.stop().await;

    // Said while n3 is down, on both other nodes.
    let mut bob = n2.client_named("bob").await;
    alice.send("during the outage 停电").await;
    bob.expect("during the outage").await;
    bob.send("still down").await;
    alice.expect("still down").await;

    // Back with its history file: it catches up on what it missed.
    let n3 = start(clustered(config_with_history(&db), &nats, "n3")).await;
    let mut asker = [
        n1.client_named("ask1").await,
        n2.client_named("ask2").await,
        n3.client_named("ask3").await,
    ];
    let mut histories = Vec::new();
    let mut searches = Vec::new();
    for member in &mut asker {
        member.send("/json").await;
        member.expect("mode").await;
        // Caught up when it answers: the last thing said is in its history.
        let history = loop {
            let history = ask(member, r#"{"type":"history","count":10}"#, "history").await;
            let entries = ids_and_texts(&history);
            if entries.last().is_some_and(|(_, text)| text == "still down") {
                break entries;
            }
        };
        histories.push(history);
        let search = r#"{"type":"search","text":"outage"}"#;
        searches.push(ids_and_texts(&ask(member, search, "search_results").await));
    }
    let texts: Vec<_> = histories[0].iter().map(|(_, text)| text.as_str()).collect();
    assert_eq!(
        texts,
        ["before the outage", "during the outage 停电", "still down"]
    );
    // The same ids, in the same order, on every node.
    assert_eq!(histories[0], histories[1]);
    assert_eq!(histories[1], histories[2]);
    assert_eq!(searches[0].len(), 2);
    assert_eq!(searches[0], searches[1]);
    assert_eq!(searches[1], searches[2]);
    for node in [n1, n2, n3] {
        node.stop().await;
    }
}

#[tokio::test]
async fn nats_going_away_is_told_and_the_nodes_recover_by_themselves() {
    let mut nats = NatsServer::start().await;
    let n1 = node(&nats, "n1").await;
    let n2 = node(&nats, "n2").await;
    let mut alice = n1.client_named("alice").await;
    let mut bob = n2.client_named("bob").await;
    // Once n1 knows bob (he is in its #lobby list), alice can write to him.
    alice.expect("bob joined").await;
    alice.send("before").await;
    alice.expect("alice: before").await;
    bob.expect("alice: before").await;

    nats.kill().await;
    alice.expect("the cluster link is down").await;
    bob.expect("the cluster link is down").await;
    // Said during the outage: it waits, and nobody sees it yet. So does a
    // private message to the other node's member (its sender sees it).
    alice.send("/msg bob while away").await;
    alice.expect("[private] alice -> bob: while away").await;
    alice.send("during").await;

    let nats = nats.restart().await;
    // Back without anyone reconnecting: what waited arrives, once.
    assert_eq!(
        bob.expect("[private]").await,
        "[private] alice -> bob: while away"
    );
    assert_eq!(bob.expect("alice:").await, "[lobby] alice: during");
    bob.send("after").await;
    assert_eq!(alice.expect("lobby]").await, "[lobby] alice: during");
    assert_eq!(alice.expect("lobby]").await, "[lobby] bob: after");
    let metrics = n1.hub.metrics().render();
    assert!(metrics.contains("sockchat_cluster_link_up 1"), "{metrics}");
    for node in [n1, n2] {
        node.stop().await;
    }
    drop(nats);
}

/// Sends `/nick NICK` and reads until the answer: whether it was granted.
async fn try_nick(member: &mut Client, nick: &str) -> bool {
    member.send(&format!("/nick {nick}")).await;
    // Others' renames are news here too: only its own is the answer.
    let renamed = format!("* {} is now known as {nick}", member.nick);
    loop {
        let line = member.line().await;
        if line == renamed {
            member.nick = nick.to_string();
            return true;
        }
        if line.contains(&format!("nickname {nick} is taken")) {
            return false;
        }
    }
}

#[tokio::test]
async fn a_nick_is_one_members_across_nodes_until_it_leaves() {
    let nats = NatsServer::start().await;
    let n1 = node(&nats, "n1").await;
    let n2 = node(&nats, "n2").await;
    // Guests are named after their node: no two nodes make the same name.
    let mut guest = n1.client().await;
    assert!(guest.nick.starts_with("guest-n1-"), "{}", guest.nick);
    let mut alice = n1.client_named("alice").await;
    let mut other = n2.client_named("other").await;
    // Taken on n1: refused on n2, in any spelling that is the same nick.
    assert!(!try_nick(&mut other, "alice").await);
    assert!(!try_nick(&mut other, "ALICE").await);
    // And on n1 itself, as before.
    assert!(!try_nick(&mut guest, "alice").await);
    alice.send("/quit").await;
    alice.expect_closed().await;
    // Free once alice has gone (its node lets go as it leaves).
    let mut granted = false;
    for _ in 0..100 {
        if try_nick(&mut other, "alice").await {
            granted = true;
            break;
        }
    }
    assert!(granted, "alice's nick was never freed");
    assert!(!try_nick(&mut guest, "alice").await);
    for node in [n1, n2] {
        node.stop().await;
    }
}

#[tokio::test]
async fn two_members_on_two_nodes_claiming_one_nick_at_once_one_gets_it() {
    let nats = NatsServer::start().await;
    let n1 = node(&nats, "n1").await;
    let n2 = node(&nats, "n2").await;
    let mut first = n1.client_named("first").await;
    let mut second = n2.client_named("second").await;
    for round in 0..10 {
        let nick = format!("prize{round}");
        // Both asks are on the wire before either answer is read.
        first.send(&format!("/nick {nick}")).await;
        second.send(&format!("/nick {nick}")).await;
        let answer = |own: &str, line: &str| {
            if line == format!("* {own} is now known as {nick}") {
                Some(true)
            } else if line.contains(&format!("nickname {nick} is taken")) {
                Some(false)
            } else {
                None
            }
        };
        let mut outcomes = Vec::new();
        for member in [&mut first, &mut second] {
            loop {
                let line = member.line().await;
                if let Some(won) = answer(&member.nick, &line) {
                    if won {
                        member.nick = nick.clone();
                    }
                    outcomes.push(won);
                    break;
                }
            }
        }
        assert_eq!(
            outcomes.iter().filter(|won| **won).count(),
            1,
            "round {round}: {outcomes:?}"
        );
    }
    for node in [n1, n2] {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_killed_nodes_nicks_are_free_within_its_lease() {
    let nats = NatsServer::start().await;
    let (n2, doomed) = short_lease_pair(&nats).await;
    let mut victim = Client::connect(doomed.addr).await;
    victim.send("/nick victim").await;
    victim.expect("is now known as victim").await;
    let mut other = n2.client_named("other").await;
    assert!(!try_nick(&mut other, "victim").await);

    // SIGKILL: the node says goodbye to no one and releases nothing.
    let mut doomed = doomed;
    doomed.child.kill().await.unwrap();
    let killed = std::time::Instant::now();
    // Asked again every 100 ms until its lease lapses.
    let mut poll = tokio::time::interval(std::time::Duration::from_millis(100));
    let freed = tokio::time::timeout(common::PATIENCE, async {
        loop {
            poll.tick().await;
            if try_nick(&mut other, "victim").await {
                return;
            }
        }
    })
    .await;
    assert!(freed.is_ok(), "the killed node's nick was never freed");
    eprintln!("freed {:?} after the kill (lease 2 s)", killed.elapsed());
    n2.stop().await;
}

#[tokio::test]
async fn a_nats_cluster_losing_one_server_keeps_the_chat_going() {
    let mut servers = NatsServer::cluster(3).await;
    let urls: Vec<String> = servers.iter().map(|server| server.url.clone()).collect();
    let mut nodes = Vec::new();
    for (at, name) in ["n1", "n2", "n3"].into_iter().enumerate() {
        let mut config = clustered(config(), &servers[at], name);
        let cluster = config.cluster.as_mut().unwrap();
        // Each node starts on its own server and may fail over to any.
        cluster.urls = urls[at..].iter().chain(&urls[..at]).cloned().collect();
        cluster.replicas = 3;
        nodes.push(start(config).await);
    }
    let mut members = Vec::new();
    for (at, node) in nodes.iter().enumerate() {
        members.push(node.client_named(&format!("m{at}")).await);
    }
    members[0].send("all three up").await;
    for member in &mut members {
        member.expect("m0: all three up").await;
    }
    // The server n2 started on goes, as a crash would.
    servers[1].kill().await;
    let said: Vec<String> = (0..3)
        .map(|at| format!("[lobby] m{at}: said by m{at} with one server down"))
        .collect();
    for (at, member) in members.iter_mut().enumerate() {
        member
            .send(&format!("said by m{at} with one server down"))
            .await;
    }
    // Everyone hears everyone, n2's member included, in one order.
    let mut orders = Vec::new();
    for member in &mut members {
        let mut lines = room_lines(member, "lobby", 3).await;
        orders.push(lines.clone());
        lines.sort();
        assert_eq!(lines, said);
    }
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[1], orders[2]);
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn every_door_on_every_node_talks_both_ways() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let nats = NatsServer::start().await;
    let nodes = [
        node(&nats, "n1").await,
        node(&nats, "n2").await,
        node(&nats, "n3").await,
    ];
    // IRC on n1.
    let mut irc = Client::connect(nodes[0].irc.unwrap()).await;
    irc.send_bytes(b"NICK ircer\r\nUSER ircer 0 * :on n1\r\nJOIN #lobby\r\n")
        .await;
    irc.expect(" 366 ").await;
    // A page on n2.
    let web = nodes[1].web.unwrap();
    let (mut page, _) = tokio_tungstenite::connect_async(format!("ws://{web}/ws"))
        .await
        .unwrap();
    let said = r#"{"type":"say","text":"from the page on n2"}"#;
    page.send(Message::Text(said.into())).await.unwrap();
    assert!(irc
        .expect("from the page on n2")
        .await
        .contains("PRIVMSG #lobby :"));
    // A bare UDP client on n3.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let answer = common::udp_join(&udp, nodes[2].udp.unwrap(), "from udp on n3").await;
    assert!(answer.contains("from udp on n3"), "{answer}");
    irc.expect("from udp on n3").await;
    // A text member on n3 too.
    let mut text = nodes[2].client_named("texter").await;
    text.send("from text on n3").await;
    irc.expect("from text on n3").await;

    // And back: IRC on n1 to the page on n2, text and UDP on n3.
    irc.send_bytes(b"PRIVMSG #lobby :from irc on n1\r\n").await;
    text.expect("ircer: from irc on n1").await;
    let heard = async {
        loop {
            let frame = page.next().await.unwrap().unwrap();
            if frame.to_text().unwrap().contains("from irc on n1") {
                return frame.to_text().unwrap().to_string();
            }
        }
    };
    let heard = tokio::time::timeout(common::PATIENCE, heard).await.unwrap();
    assert!(heard.contains(r#""from":"ircer""#), "{heard}");
    // The UDP member pulls what waits for it with its next datagram.
    let pulled = async {
        loop {
            udp.send_to(b"", nodes[2].udp.unwrap()).await.unwrap();
            let seen = common::udp_answer(&udp).await;
            if seen.contains("from irc on n1") {
                return seen;
            }
        }
    };
    let pulled = tokio::time::timeout(common::PATIENCE, pulled)
        .await
        .unwrap();
    assert!(pulled.contains("ircer: from irc on n1"), "{pulled}");
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn rooms_list_join_and_leave_members_of_every_node() {
    let nats = NatsServer::start().await;
    let n1 = node(&nats, "n1").await;
    let n2 = node(&nats, "n2").await;
    let mut alice = n1.client_named("alice").await;
    alice.send("/join #team").await;
    alice.expect("alice joined #team").await;
    let mut bob = n2.client_named("bob").await;
    bob.send("/join #team").await;
    bob.expect("bob joined #team").await;
    // alice, on n1, hears bob on n2 arrive.
    alice.expect("bob joined #team").await;
    // And either sees both in /who, on either node.
    for member in [&mut alice, &mut bob] {
        let who = loop {
            member.send("/who #team").await;
            let who = member.expect("* #team has").await;
            if who.contains("2:") {
                break who;
            }
        };
        assert!(who.contains("alice") && who.contains("bob"), "{who}");
    }
    // /rooms counts everyone.
    bob.send("/rooms").await;
    let rooms = bob.expect("* rooms:").await;
    assert!(rooms.contains("#team (2)"), "{rooms}");
    // A rename is one change, not a leave and a join.
    alice.send("/nick alicia").await;
    alice.expect("is now known as alicia").await;
    assert_eq!(bob.expect("alice").await, "* alice is now known as alicia");
    bob.send("/part #team").await;
    assert_eq!(alice.expect("bob").await, "* bob left #team");
    for node in [n1, n2] {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_killed_nodes_members_leave_every_room_elsewhere() {
    let nats = NatsServer::start().await;
    let (n2, mut doomed) = short_lease_pair(&nats).await;
    let mut watcher = n2.client_named("watcher").await;
    let mut victim = Client::connect(doomed.addr).await;
    victim.send("/nick victim").await;
    victim.expect("is now known as victim").await;
    victim.send("/join #den").await;
    watcher.send("/join #den").await;
    watcher.expect("victim joined #den").await;
    doomed.child.kill().await.unwrap();
    // Within its lease, it is gone from every room here.
    let gone = watcher.expect("victim").await;
    assert!(gone.contains("victim lost the connection"), "{gone}");
    watcher.send("/who #den").await;
    assert_eq!(watcher.expect("#den has").await, "* #den has 1: watcher");
    n2.stop().await;
}

#[tokio::test]
async fn private_messages_cross_nodes_both_ways() {
    let nats = NatsServer::start().await;
    let n1 = node(&nats, "n1").await;
    let n2 = node(&nats, "n2").await;
    let mut alice = n1.client_named("alice").await;
    let mut bob = n2.client_named("bob").await;
    // Once n1 knows bob (he is in its #lobby list), alice can write to him.
    alice.expect("bob joined").await;
    alice.send("/msg bob 悄悄话 across nodes").await;
    assert_eq!(
        alice.expect("[private]").await,
        "[private] alice -> bob: 悄悄话 across nodes"
    );
    assert_eq!(
        bob.expect("[private]").await,
        "[private] alice -> bob: 悄悄话 across nodes"
    );
    bob.send("/away lunch").await;
    bob.expect("away").await;
    // bob's away text reaches n1 with his entry: then alice's message to
    // him is answered with it, as on one node.
    let mut told = false;
    for _ in 0..200 {
        alice.send("/msg bob and back?").await;
        alice.expect("[private] alice -> bob: and back?").await;
        bob.expect("and back?").await;
        alice.send("/ping").await;
        let mut lines = Vec::new();
        loop {
            let line = alice.line().await;
            if line.contains("pong") {
                break;
            }
            lines.push(line);
        }
        if lines.iter().any(|line| line.contains("lunch")) {
            told = true;
            break;
        }
    }
    assert!(told, "bob's away text never reached alice");
    bob.send("/msg alice yes").await;
    assert_eq!(alice.expect("yes").await, "[private] bob -> alice: yes");
    for node in [n1, n2] {
        node.stop().await;
    }
}

/// `config` as node `node` of the cluster at `nats`, with a lease of
/// `lease` (renewals, and asks the link could not make, every third).
fn clustered_with_lease(
    config: ServeConfig,
    nats: &NatsServer,
    node: &str,
    lease: std::time::Duration,
) -> ServeConfig {
    let mut config = clustered(config, nats, node);
    config.cluster.as_mut().unwrap().lease = lease;
    config
}

#[tokio::test]
async fn a_guest_arriving_while_nats_is_away_holds_its_name_once_it_is_back() {
    let mut nats = NatsServer::start().await;
    let lease = std::time::Duration::from_secs(3);
    let n1 = start(clustered_with_lease(config(), &nats, "n1", lease)).await;
    let n2 = start(clustered_with_lease(config(), &nats, "n2", lease)).await;
    let mut watcher = n2.client_named("watcher").await;
    let mut other = n2.client_named("other").await;
    nats.kill().await;
    watcher.expect("the cluster link is down").await;
    // Its name cannot be claimed now, and it is a name it has already.
    let guest = n1.client().await;
    let nats = nats.restart().await;
    watcher.expect("the cluster link is back").await;
    // Claimed once the link is back: shown to the other nodes, and theirs
    // to take no more.
    watcher.expect(&format!("{} joined", guest.nick)).await;
    assert!(!try_nick(&mut other, &guest.nick).await);
    for node in [n1, n2] {
        node.stop().await;
    }
    drop(nats);
}

#[tokio::test]
async fn a_renewal_whose_answer_was_lost_keeps_the_nick() {
    use futures_util::StreamExt;
    let nats = NatsServer::start().await;
    let lease = std::time::Duration::from_secs(3);
    let n1 = start(clustered_with_lease(config(), &nats, "n1", lease)).await;
    let mut alice = n1.client_named("alice").await;
    let client = async_nats::connect(&nats.url).await.unwrap();
    let bucket = async_nats::jetstream::new(client)
        .get_key_value("sockchat_nicks")
        .await
        .unwrap();
    // The node's own entry, written again: as if a write of the node had
    // landed and its answer been lost, the node holds an older revision.
    let entry = bucket.entry("alice").await.unwrap().unwrap();
    let landed = bucket.put("alice", entry.value).await.unwrap();
    // The node's next renewal finds out, and renews on from there.
    let mut changes = bucket.watch("alice").await.unwrap();
    let renewed = tokio::time::timeout(common::PATIENCE, async {
        loop {
            let change = changes.next().await.unwrap().unwrap();
            if change.revision > landed {
                return change.operation;
            }
        }
    })
    .await
    .expect("the node renews alice's nick again");
    assert_eq!(renewed, async_nats::jetstream::kv::Operation::Put);
    // And alice was never renamed.
    alice.send("/ping").await;
    loop {
        let line = alice.line().await;
        assert!(!line.contains("known as"), "{line}");
        if line.contains("pong") {
            break;
        }
    }
    alice.send("/who").await;
    assert!(alice.expect("has").await.contains("alice"));
    n1.stop().await;
}

#[tokio::test]
async fn a_node_whose_history_is_not_the_clusters_refuses_to_join() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("single.db");
    // A single node's history first.
    let single = start(config_with_history(&db)).await;
    let mut alice = single.client_named("alice").await;
    alice.send("said on one node").await;
    alice.expect("said on one node").await;
    drop(alice);
    single.stop().await;
    // Then the same file, in a cluster whose log has fewer messages.
    let nats = NatsServer::start().await;
    let config = clustered(config_with_history(&db), &nats, "n1");
    let Err(refused) = sockchat::server::Server::bind(config).await else {
        panic!("the node joined a cluster whose history is not its own");
    };
    let refusal = format!("{refused:#}");
    assert!(
        refusal.contains("is not this cluster's history"),
        "{refusal}"
    );
    // And in a cluster whose log is longer: its message 1 is not this one.
    let dir_n0 = tempfile::tempdir().unwrap();
    let n0 = start(clustered(
        config_with_history(&dir_n0.path().join("n0.db")),
        &nats,
        "n0",
    ))
    .await;
    let mut bob = n0.client_named("bob").await;
    for text in ["one in the cluster", "two in the cluster"] {
        bob.send(text).await;
        bob.expect(text).await;
    }
    let config = clustered(config_with_history(&db), &nats, "n1");
    let Err(refused) = sockchat::server::Server::bind(config).await else {
        panic!("the node joined a cluster whose log is longer than its history, and other");
    };
    let refusal = format!("{refused:#}");
    assert!(
        refusal.contains("history is not this cluster's"),
        "{refusal}"
    );
    n0.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_generator_spreads_its_clients_over_the_nodes() {
    use sockchat::loadgen::{run, BenchPlan, Wire};
    let nats = NatsServer::start().await;
    let nodes = [node(&nats, "n1").await, node(&nats, "n2").await];
    let plan = BenchPlan {
        server: format!("{},{}", nodes[0].addr, nodes[1].addr),
        wire: Wire::Tcp,
        clients: 6,
        senders: 2,
        rate: 50.0,
        back_to_back: false,
        duration: std::time::Duration::from_secs(1),
        drain: std::time::Duration::from_secs(5),
        pids: vec![std::process::id()],
        channel: "#bench".into(),
        greeting: true,
        connect_timeout: std::time::Duration::from_secs(60),
        room: "~bench".into(),
        tls: false,
    };
    let report = run(&plan, false).await.unwrap();
    // Both senders' messages reach every client on both nodes, once.
    assert!(report.messages_sent >= 2, "{report}");
    assert_eq!(report.deliveries_expected, report.messages_sent * 5);
    assert_eq!(
        report.deliveries_received, report.deliveries_expected,
        "{report}"
    );
    assert_eq!(report.servers.len(), 2);
    // Half the clients are on the other node from each sender.
    let between = report
        .latency_cross_node_ms
        .clone()
        .expect("latency between nodes");
    assert!(
        between.p50 > 0.0 && between.max <= report.latency_ms.max,
        "{report}"
    );
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn whois_who_and_ison_find_members_of_other_nodes() {
    let nats = NatsServer::start().await;
    let n1 = node(&nats, "n1").await;
    let n2 = node(&nats, "n2").await;
    let mut bob = n2.client_named("bob0").await;
    bob.send("/join #den").await;
    bob.send("/away at lunch").await;
    bob.expect("away").await;
    let mut alice = n1.client_named("alice").await;
    // (bob0: a nick whose key is written escaped in the directory.)
    // Once n1 knows bob0 is away (his entry says so), a lookup shows it.
    let mut tries = 0;
    let found = loop {
        alice.send("/whois bob0").await;
        let found = alice.expect("bob0").await;
        if found.contains("away") {
            break found;
        }
        tries += 1;
        assert!(tries < 10_000, "n1 never learns bob0 is away: {found}");
    };
    assert_eq!(found, "* bob0 is on tcp, in #lobby #den (away: at lunch)");
    let mut irc = Client::connect(n1.irc.unwrap()).await;
    irc.send_bytes(b"NICK ircer\r\nUSER ircer 0 * :on n1\r\n")
        .await;
    irc.expect(" 001 ").await;
    irc.send_bytes(b"ISON bob0 nobody alice\r\nWHOIS bob0\r\nWHO #den\r\n")
        .await;
    let ison = irc.expect(" 303 ").await.trim_end().to_string();
    assert!(ison.ends_with(":bob0 alice"), "{ison:?}");
    assert!(irc.expect(" 311 ").await.contains(" bob0 "));
    assert!(irc.expect(" 301 ").await.trim_end().ends_with(":at lunch"));
    irc.expect(" 318 ").await;
    assert!(irc.expect(" 352 ").await.contains(" bob0 "));
    irc.expect(" 315 ").await;
    for node in [n1, n2] {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_nodes_log_lines_name_it() {
    let nats = NatsServer::start().await;
    let mut named = ServerProcess::start(&["--cluster", &nats.url, "--node", "logged"]).await;
    let line = named.expect_log("joined the cluster").await;
    assert!(line.starts_with("node=logged "), "{line}");
    let mut member = Client::connect(named.addr).await;
    member.send("/nick seen").await;
    member.expect("is now known as seen").await;
    let line = named.expect_log("nick change").await;
    assert!(line.starts_with("node=logged "), "{line}");
    named.terminate().await;
}

#[tokio::test]
async fn a_rooms_topic_modes_ranks_invitations_and_kicks_hold_on_every_node() {
    let nats = NatsServer::start().await;
    let n1 = node(&nats, "n1").await;
    let n2 = node(&nats, "n2").await;
    let mut alice = n1.client_named("alice").await;
    alice.send("/join #lab").await;
    alice.expect("alice joined #lab").await;
    let mut bob = n2.client_named("bob").await;
    bob.send("/join #lab").await;
    bob.expect("bob joined #lab").await;
    alice.expect("bob joined #lab").await;
    // alice made the room, so she runs it; bob, on the other node, does not.
    bob.send("/topic mine now").await;
    bob.expect("only the operators of #lab may do that").await;
    alice.send("/topic 实验室 today").await;
    let set = "* alice set the topic of #lab: 实验室 today";
    assert_eq!(alice.expect("topic").await, set);
    assert_eq!(bob.expect("topic").await, set);
    // Modes made on one node hold on the other: bob's node keeps him quiet.
    // Each change is told once: nothing of the topic comes again before it.
    alice.send("/mode +m").await;
    for member in [&mut alice, &mut bob] {
        let lines = member.lines_until("sets mode").await;
        assert!(
            !lines.iter().any(|line| line.contains("topic")),
            "{lines:?}"
        );
        assert_eq!(lines.last().unwrap(), "* alice sets mode +m on #lab");
    }
    bob.send("may I?").await;
    bob.expect("#lab is moderated").await;
    alice.send("/mode +v bob").await;
    for member in [&mut alice, &mut bob] {
        assert_eq!(
            member.expect("sets mode").await,
            "* alice sets mode +v bob on #lab"
        );
    }
    bob.send("now I may").await;
    assert_eq!(
        room_lines(&mut alice, "lab", 1).await,
        ["[lab] bob: now I may"]
    );
    // Invite only: carol, on n2, comes in on alice's invitation from n1.
    alice.send("/mode +i").await;
    bob.expect("* alice sets mode +i on #lab").await;
    let mut carol = n2.client_named("carol").await;
    carol.send("/join #lab").await;
    carol.expect("#lab is invite only").await;
    alice.send("/invite carol").await;
    let invited = "* alice invited carol to #lab (/join #lab)";
    assert_eq!(carol.expect("invited").await, invited);
    assert_eq!(alice.expect("invited").await, invited);
    carol.send("/join #lab").await;
    carol.expect("carol joined #lab").await;
    alice.expect("carol joined #lab").await;
    // Each node lists the room's ranks, wherever their holders are.
    let mut irc = Client::connect(n2.irc.unwrap()).await;
    irc.send_bytes(b"NICK ircer\r\nUSER ircer 0 * :on n2\r\nNAMES #lab\r\nMODE #lab\r\n")
        .await;
    let names = irc.expect(" 353 ").await.trim_end().to_string();
    assert!(
        names.contains("@alice") && names.contains("+bob"),
        "{names}"
    );
    assert!(irc.expect(" 324 ").await.contains("+imnt"));
    // A kick from n1 puts bob out on n2, and every member hears it once.
    alice.send("/kick bob enough").await;
    let kicked = "* bob was kicked from #lab by alice (enough)";
    for member in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(member.expect("kicked").await, kicked);
    }
    bob.send("/join #lab").await;
    bob.expect("#lab is invite only").await;
    alice.send("after the kick").await;
    let said = loop {
        let line = alice.line().await;
        assert!(
            !line.contains("bob left"),
            "a second notice of the kick: {line}"
        );
        if line.starts_with("[lab] ") {
            break line;
        }
    };
    assert_eq!(said, "[lab] alice: after the kick");
    // A node that comes later knows the room as it is, secret as well:
    // its members are still counted, and the room still keeps them out.
    alice.send("/mode +s").await;
    carol.expect("* alice sets mode +s on #lab").await;
    let n3 = node(&nats, "n3").await;
    let mut late = Client::connect(n3.irc.unwrap()).await;
    late.send_bytes(b"NICK late\r\nUSER late 0 * :on n3\r\n")
        .await;
    late.expect(" 001 ").await;
    // Once n3 has heard of the room (its members, and its entry), it
    // answers for it.
    let mut tries = 0;
    let topic = loop {
        late.send_bytes(b"TOPIC #lab\r\n").await;
        let answer = late.expect("#lab").await.trim_end().to_string();
        if !answer.contains(" 403 ") && !answer.contains(" 331 ") {
            break answer;
        }
        tries += 1;
        assert!(tries < 10_000, "n3 never learns of #lab: {answer}");
    };
    assert!(topic.ends_with(":实验室 today"), "{topic}");
    late.send_bytes(b"MODE #lab\r\nJOIN #lab\r\nLIST\r\n").await;
    assert!(late.expect(" 324 ").await.contains("+imnst"));
    late.expect(" 473 ").await;
    // Listed to nobody outside it.
    let listed = late.lines_until(" 323 ").await;
    assert!(
        !listed.iter().any(|line| line.contains("#lab")),
        "{listed:?}"
    );
    for node in [n1, n2, n3] {
        node.stop().await;
    }
}
