//! `sockchat bench` against our own server, small and short: it connects
//! every client, counts deliveries and measures latency on each wire.

mod common;

use std::time::Duration;

use common::{config, config_with_tls, start};
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
        pids: vec![std::process::id()],
        channel: "#bench".into(),
        // sockchat greets every client with its welcome line.
        greeting: true,
        connect_timeout: Duration::from_secs(60),
        room: "~bench".into(),
        tls: false,
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

#[tokio::test(flavor = "multi_thread")]
async fn the_load_generator_speaks_tls_to_the_tls_door_and_the_https_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(config_with_tls(dir.path())).await;
    for (wire, addr) in [
        (Wire::Tcp, server.tls.unwrap()),
        (Wire::Ws, server.web.unwrap()),
    ] {
        let report = run(
            &BenchPlan {
                tls: true,
                ..plan(addr, wire)
            },
            false,
        )
        .await
        .unwrap();
        assert!(report.tls);
        assert!(report.messages_sent >= 2, "{report}");
        assert_eq!(
            report.deliveries_received,
            report.messages_sent * 5,
            "{report}"
        );
    }
    // It does speak TLS: the plain text door answers a ClientHello with
    // where TLS is, and no handshake completes.
    let refused = run(
        &BenchPlan {
            tls: true,
            ..plan(server.addr, Wire::Tcp)
        },
        false,
    )
    .await;
    let error = format!(
        "{:#}",
        refused.expect_err("a TLS client was seated on the text door")
    );
    assert!(error.contains("TLS handshake"), "{error}");
    server.stop().await;
}
