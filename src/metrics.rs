//! Counters for `/metrics`, in the Prometheus text format: connections by
//! door, messages in and out, members dropped by reason, history writes.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A door label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DoorLabel {
    pub door: &'static str,
}

/// Why a member was dropped or refused.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// The server's counters. Cheap to update from any thread.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Members connected now, by door.
    pub connections: Family<DoorLabel, Gauge>,
    /// Room and private messages received, by the sender's door.
    pub messages_in: Family<DoorLabel, Counter>,
    /// Messages delivered to members (one per recipient).
    pub messages_out: Counter,
    /// Members dropped or refused, by reason.
    pub drops: Family<ReasonLabel, Counter>,
    /// Messages committed to history.
    pub history_writes: Counter,
    /// Messages whose commit failed (kept for a retry).
    pub history_write_failures: Counter,
    /// Times flow control held a sender: it talked to a member that was
    /// behind, and was read no further until that member caught up.
    pub flow_holds: Counter,
    /// Datagrams from unproven UDP sources answered (with a code), and
    /// left unanswered because the budget for all of them was spent.
    pub udp_unproven: Counter,
    pub udp_unanswered: Counter,
    /// TLS handshakes that did not complete, by why: `error` (not TLS, or
    /// refused by the client) or `timeout`.
    pub tls_handshakes_failed: Family<ReasonLabel, Counter>,
    /// Certificate reloads (SIGHUP), by outcome: `ok` or `kept_old`.
    pub tls_reloads: Family<ReasonLabel, Counter>,
    /// The cluster link (`serve --cluster`): 1 while NATS is reached, 0
    /// while not (and on a node in no cluster).
    pub cluster_link_up: Gauge,
    /// Messages this node published to the cluster's log, and of those the
    /// publications sent again after a failure (the log drops the copies).
    pub cluster_published: Counter,
    pub cluster_republished: Counter,
    /// Messages read from the log, and those the log holds that this node
    /// has not read yet (its lag behind the cluster).
    pub cluster_received: Counter,
    pub cluster_lag: Gauge,
    /// Messages said here waiting for the link; past the queue's bound
    /// senders are told to try again.
    pub cluster_queued: Gauge,
    pub cluster_refused: Counter,
}

impl Metrics {
    /// Counts a member dropped or refused for `reason`.
    pub fn drop_for(&self, reason: &'static str) {
        self.drops.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a TLS handshake that did not complete.
    pub fn tls_handshake_failed(&self, why: &'static str) {
        let label = ReasonLabel { reason: why };
        self.tls_handshakes_failed.get_or_create(&label).inc();
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut registry = Registry::with_prefix("sockchat");
        registry.register(
            "connections",
            "Members connected now, by door",
            self.connections.clone(),
        );
        registry.register(
            "messages_in",
            "Messages received, by door",
            self.messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Messages delivered, one per recipient",
            self.messages_out.clone(),
        );
        registry.register(
            "drops",
            "Members dropped or refused, by reason",
            self.drops.clone(),
        );
        registry.register(
            "history_writes",
            "Messages committed to history",
            self.history_writes.clone(),
        );
        registry.register(
            "history_write_failures",
            "Messages whose history commit failed",
            self.history_write_failures.clone(),
        );
        registry.register(
            "flow_holds",
            "Times a sender was held until a reader it talked to caught up",
            self.flow_holds.clone(),
        );
        registry.register(
            "udp_unproven",
            "Datagrams from UDP sources not yet proven, answered with a code",
            self.udp_unproven.clone(),
        );
        registry.register(
            "udp_unanswered",
            "Datagrams from unproven UDP sources left unanswered: their budget was spent",
            self.udp_unanswered.clone(),
        );
        registry.register(
            "tls_handshakes_failed",
            "TLS handshakes that did not complete, by why",
            self.tls_handshakes_failed.clone(),
        );
        registry.register(
            "tls_reloads",
            "Certificate reloads, by outcome",
            self.tls_reloads.clone(),
        );
        registry.register(
            "cluster_link_up",
            "1 while the cluster link reaches NATS, else 0",
            self.cluster_link_up.clone(),
        );
        registry.register(
            "cluster_published",
            "Messages published to the cluster's log",
            self.cluster_published.clone(),
        );
        registry.register(
            "cluster_republished",
            "Publications sent again after a failure",
            self.cluster_republished.clone(),
        );
        registry.register(
            "cluster_received",
            "Messages read from the cluster's log",
            self.cluster_received.clone(),
        );
        registry.register(
            "cluster_lag",
            "Messages in the cluster's log this node has not read yet",
            self.cluster_lag.clone(),
        );
        registry.register(
            "cluster_queued",
            "Messages waiting for the cluster link",
            self.cluster_queued.clone(),
        );
        registry.register(
            "cluster_refused",
            "Messages refused because the cluster link was behind",
            self.cluster_refused.clone(),
        );
        register_process_gauges(&mut registry);
        let mut text = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("encoding into a String");
        text
    }
}

/// What the process holds at the time of the scrape: live tasks, open
/// file descriptors and resident memory. A leak shows as one of these
/// growing while the connections do not (`scripts/soak.sh` watches them).
fn register_process_gauges(registry: &mut Registry) {
    let gauge = |value: usize| {
        let gauge: Gauge = Gauge::default();
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        gauge
    };
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let tasks = runtime.metrics().num_alive_tasks();
        registry.register("tasks", "Tasks alive in the runtime", gauge(tasks));
    }
    // Linux's view of the process; elsewhere these are left out.
    if let Ok(descriptors) = std::fs::read_dir("/proc/self/fd") {
        let open = descriptors.count();
        registry.register("open_fds", "Open file descriptors", gauge(open));
    }
    if let Some(resident) = resident_bytes() {
        registry.register(
            "resident_memory_bytes",
            "Resident memory in bytes",
            gauge(resident),
        );
    }
}

/// `VmRSS` from `/proc/self/status`.
fn resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        metrics
            .connections
            .get_or_create(&DoorLabel { door: "tcp" })
            .inc();
        metrics.messages_out.inc_by(3);
        metrics.drop_for("sendq");
        let text = metrics.render();
        assert!(
            text.contains("sockchat_connections{door=\"tcp\"} 1"),
            "{text}"
        );
        assert!(text.contains("sockchat_messages_out_total 3"), "{text}");
        assert!(
            text.contains("sockchat_drops_total{reason=\"sendq\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[tokio::test]
    async fn shows_what_the_process_holds() {
        let (_hold, held) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(held);
        let text = Metrics::default().render();
        task.abort();
        let value = |name: &str| -> i64 {
            let line = text
                .lines()
                .find(|line| line.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {text}"));
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!(value("sockchat_tasks ") >= 1, "the task spawned");
        assert!(value("sockchat_open_fds ") >= 3, "stdin, stdout, stderr");
        assert!(value("sockchat_resident_memory_bytes ") > 1 << 20);
    }
}
