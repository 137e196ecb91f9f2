//! Flow control through real sockets: a room goes at the pace its readers
//! read. A reader that keeps reading is never dropped, however fast the
//! sender writes; one that stops is dropped, and the others go on.

mod common;

use std::time::Duration;

use common::{config, start, Client};
use sockchat::metrics::DoorLabel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

/// A client with a tiny receive window, so the server's writes to it
/// wait as soon as it is behind.
async fn narrow_client(server: std::net::SocketAddr, nick: &str) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut client = Client::from_stream(socket.connect(server).await.unwrap());
    client.expect("welcome").await;
    client.send(&format!("/nick {nick}")).await;
    client.expect(&format!("now known as {nick}")).await;
    client
}

#[tokio::test]
async fn a_reader_that_falls_behind_holds_the_sender_and_is_never_dropped() {
    // 10 MB back to back: ten times the default sendq, and more than
    // socket buffers hold.
    const MESSAGES: usize = 2500;
    let mut settings = config();
    settings.limits.max_line = 8192;
    // This reader pauses on purpose; the stall rule has its own test.
    settings.limits.stall_timeout = Duration::from_secs(600);
    let server = start(settings).await;
    let slow = narrow_client(server.addr, "slow").await;
    let sender = server.client_named("sender").await;

    // The sender writes everything at once and never waits for anyone; it
    // reads its own echoes on the side.
    let (mut sender_in, mut sender_out) = sender.into_stream().into_split();
    let echoes =
        tokio::spawn(async move { tokio::io::copy(&mut sender_in, &mut tokio::io::sink()).await });
    let body = "b".repeat(4000);
    let writing = tokio::spawn(async move {
        for index in 0..MESSAGES {
            let line = format!("big-{index} {body}\n");
            sender_out.write_all(line.as_bytes()).await.unwrap();
        }
        sender_out
    });

    // The reader reads nothing until the server has held the sender for
    // it and takes no more of its lines. Without flow control the server
    // would go on taking them, the reader's queue would pass its sendq,
    // and the reader would be dropped.
    let holds = || server.hub.metrics().flow_holds.get();
    let taken = || {
        server
            .hub
            .metrics()
            .messages_in
            .get_or_create(&DoorLabel { door: "tcp" })
            .get()
    };
    tokio::time::timeout(common::PATIENCE, async {
        let (mut last, mut unchanged) = (taken(), 0);
        while holds() == 0 || unchanged < 10_000 {
            tokio::task::yield_now().await;
            let now = taken();
            unchanged = if now == last { unchanged + 1 } else { 0 };
            last = now;
            if now >= 1000 {
                break;
            }
        }
    })
    .await
    .expect("the sender is held while the reader is behind");
    assert!(
        taken() < 1000,
        "the server took {} lines for a reader that reads nothing",
        taken()
    );

    // Then it reads everything, in order, and is never dropped.
    let mut slow = slow.into_stream();
    let mut chunk = vec![0u8; 2048];
    let (mut received, mut partial) = (0, Vec::new());
    while received < MESSAGES {
        let read = tokio::time::timeout(common::PATIENCE, slow.read(&mut chunk))
            .await
            .expect("the room goes on")
            .unwrap();
        assert!(
            read > 0,
            "the slow reader was disconnected after {received}"
        );
        partial.extend_from_slice(&chunk[..read]);
        while let Some(end) = partial.iter().position(|byte| *byte == b'\n') {
            let line: Vec<u8> = partial.drain(..=end).collect();
            let line = String::from_utf8(line).unwrap();
            if let Some(rest) = line.strip_prefix("[lobby] sender: big-") {
                assert!(rest.starts_with(&format!("{received} ")), "in order");
                received += 1;
            }
            assert!(!line.contains("disconnected"), "{line}");
        }
    }
    let _sender_out = writing.await.unwrap();
    echoes.abort();
    server.stop().await;
}

#[tokio::test]
async fn a_reader_that_stops_is_dropped_and_the_others_keep_their_pace() {
    const MESSAGES: usize = 2500;
    let mut settings = config();
    settings.limits.max_line = 8192;
    settings.limits.stall_timeout = Duration::from_millis(300);
    let server = start(settings).await;

    // The stopped reader: a tiny receive window, and it never reads.
    let _stopped = narrow_client(server.addr, "stopped").await;
    let mut fast = server.client_named("fast").await;
    let sender = server.client_named("sender").await;
    fast.expect("sender joined").await;

    // About 10 MB in all, far past what socket buffers can hide. The
    // sender stays at most WINDOW messages ahead of the fast reader.
    const WINDOW: usize = 8;
    let (mut sender_in, mut sender_out) = sender.into_stream().into_split();
    let echoes =
        tokio::spawn(async move { tokio::io::copy(&mut sender_in, &mut tokio::io::sink()).await });
    let body = "b".repeat(4000);
    let (mut sent, mut received, mut saw_drop) = (0, 0, false);
    while received < MESSAGES {
        while sent < MESSAGES && sent < received + WINDOW {
            let line = format!("big-{sent} {body}\n");
            sender_out.write_all(line.as_bytes()).await.unwrap();
            sent += 1;
        }
        let line = fast.line().await;
        if line.starts_with("[lobby] sender: big-") {
            received += 1;
        } else if line == "* stopped was disconnected (sendq exceeded)" {
            saw_drop = true;
        }
    }
    assert!(
        saw_drop,
        "the stopped reader was dropped while the others went on"
    );
    echoes.abort();
    server.stop().await;
}
