//! `sockchat bench` against our own server, small and short: it connects
//! every client, counts deliveries and measures latency on each wire.

mod common;

use std::time::Duration;

use common::{config, start};
use sockchat::loadgen::{run, BenchPlan, Wire};

fn plan(server: std::net::SocketAddr, wire: Wire) -> BenchPlan {
    BenchPlan {
        server: server.to_string(),
        wire,
        clients: 6,
        senders: 2,
        rate: 50.0,
        back_to_back: false,
        duration: Duration::from_secs(1),
        drain: Duration::from_secs(5),
        pid: Some(std::process::id()),
        channel: "#bench".into(),
        // sockchat greets every client with its welcome line.
        greeting: true,
        connect_timeout: Duration::from_secs(60),
        room: "~bench".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_generator_counts_every_delivery_over_tcp_and_websocket() {
    let server = start(config()).await;
    for (wire, addr) in [(Wire::Tcp, server.addr), (Wire::Ws, server.web.unwrap())] {
        let report = run(&plan(addr, wire), false).await.unwrap();
        assert_eq!(report.clients_connected, 6);
        assert!(report.messages_sent >= 2, "{report}");
        // Every message is expected at the five clients other than its sender.
        assert_eq!(
            report.deliveries_expected,
            report.messages_sent * 5,
            "{report}"
        );
        assert_eq!(
            report.deliveries_received, report.deliveries_expected,
            "{report}"
        );
        assert!(report.latency_ms.max > 0.0 && report.latency_ms.p50 <= report.latency_ms.max);
        let usage = report.server.expect("this process's usage");
        assert!(usage.rss_before_kib > 0);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_load_generator_speaks_sockchat_udp() {
    let server = start(config()).await;
    let report = run(&plan(server.udp.unwrap(), Wire::Udp), false)
        .await
        .unwrap();
    assert!(report.messages_sent >= 2, "{report}");
    // UDP may lose a datagram on a busy machine; the count must still add up.
    assert_eq!(
        report.deliveries_expected,
        report.messages_sent * 5,
        "{report}"
    );
    assert!(
        report.deliveries_received as f64 >= 0.95 * report.deliveries_expected as f64
            && report.deliveries_received <= report.deliveries_expected,
        "{report}"
    );
    server.stop().await;
}
