//! A peer that vanishes without a FIN or a reset (cable pulled, machine
//! off) is found within `--liveness` and leaves once, with a reason. The
//! vanishing is real: the client runs in a network namespace of the
//! test's own, joined to the server by a veth pair, and the namespace's
//! end of the link goes down. Needs root and iproute2 (scripts/test.sh
//! installs it); everything made is deleted afterwards.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{config, start};

/// A namespace and a veth pair into it, deleted on drop.
struct TestNetwork {
    namespace: String,
    host_link: String,
    inside_link: String,
    host_ip: String,
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2's ip runs (scripts/test.sh installs it)");
    assert!(status.success(), "ip {args:?} failed (the test needs root)");
}

impl TestNetwork {
    fn create() -> TestNetwork {
        let id = std::process::id();
        let subnet = id % 250;
        let network = TestNetwork {
            namespace: format!("sockchat-live-{id}"),
            host_link: format!("scl{id}h"),
            inside_link: format!("scl{id}n"),
            host_ip: format!("10.254.{subnet}.1"),
        };
        let inside_ip = format!("10.254.{subnet}.2/30");
        let ns = network.namespace.as_str();
        ip(&["netns", "add", ns]);
        ip(&[
            "link",
            "add",
            &network.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &network.inside_link,
            "netns",
            ns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", network.host_ip),
            "dev",
            &network.host_link,
        ]);
        ip(&["link", "set", &network.host_link, "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &inside_ip,
            "dev",
            &network.inside_link,
        ]);
        ip(&["-n", ns, "link", "set", &network.inside_link, "up"]);
        network
    }

    /// The cable pulled: the namespace's end goes down, so nothing from
    /// it arrives and nothing reaches it, and no FIN or reset is sent.
    fn pull_the_cable(&self) {
        ip(&[
            "-n",
            &self.namespace,
            "link",
            "set",
            &self.inside_link,
            "down",
        ]);
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and so both.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.namespace])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn a_peer_that_vanishes_leaves_within_the_liveness_time() {
    let network = TestNetwork::create();
    let mut settings = config();
    settings.tcp = Some(format!("{}:0", network.host_ip).parse().unwrap());
    settings.udp = None;
    settings.limits.liveness = Some(Duration::from_secs(3));
    let server = start(settings).await;
    let mut watcher = server.client_named("watcher").await;

    let mut vanishing = tokio::process::Command::new("ip")
        .args(["netns", "exec", &network.namespace, common::process::BINARY])
        .args([
            "connect",
            &server.addr.to_string(),
            "--nick",
            "vanishing",
            "--plain",
        ])
        .env("XDG_CONFIG_HOME", common::process::NO_USER_CONFIG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the client in the namespace");
    watcher.expect("* vanishing joined").await;

    network.pull_the_cable();
    let left = watcher.expect("* vanishing ").await;
    assert_eq!(left, "* vanishing was disconnected (no answer for 3 s)");
    // Its nick is free again.
    let mut again = server.client_named("vanishing").await;
    again.send("back").await;
    watcher.expect("[lobby] vanishing: back").await;

    let _ = vanishing.kill().await;
    server.stop().await;
}
