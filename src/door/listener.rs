//! Listening sockets for the stream doors, and what they do when the
//! process runs out of file descriptors.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// How long to wait before accepting again after `accept` fails for a
/// reason other than running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections the kernel may hold for `accept`. Past it, new connections'
/// SYNs are dropped and retried a second or more later, so a crowd arriving
/// at once (everyone reconnecting after a restart) needs a deep queue; the
/// kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Receive buffer per connection, in bytes (the kernel doubles it for its
/// bookkeeping): hundreds of lines, far more than a person types ahead.
const RECEIVE_BUFFER: u32 = 32 * 1024;

/// Binds a TCP listener with a deep accept queue.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted server can bind at once.
    socket.set_reuseaddr(true)?;
    // Accepted connections inherit it. The kernel's own receive buffer
    // would grow to megabytes for a fast sender; the room's flow control
    // holds a sender by not reading it, and what it already sent then
    // waits in this buffer, so a small one keeps that wait short.
    socket.set_recv_buffer_size(RECEIVE_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Keepalive probes sent, one each `within / 6`, after `within / 2` of
/// silence, before a peer counts as gone: the last comes at `within`.
const KEEPALIVE_PROBES: u32 = 3;

/// Makes the kernel find a peer that vanished without a FIN or a reset
/// (cable pulled, machine off) within `within`: keepalive probes while
/// the connection is quiet, and `TCP_USER_TIMEOUT` while data we sent goes
/// unacknowledged. Either way the next read or write then fails with
/// `TimedOut`, and the member leaves as unresponsive.
pub fn watch_liveness(stream: &TcpStream, within: Option<Duration>) {
    let Some(within) = within else {
        return;
    };
    let secs = within.as_secs().max(2);
    let keepalive = TcpKeepalive::new()
        .with_time(Duration::from_secs(secs / 2))
        .with_interval(Duration::from_secs((secs / 6).max(1)))
        .with_retries(KEEPALIVE_PROBES);
    let socket = SockRef::from(stream);
    if let Err(error) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!(%error, "cannot set TCP keepalive");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(error) = socket.set_tcp_user_timeout(Some(within)) {
        tracing::debug!(%error, "cannot set TCP_USER_TIMEOUT");
    }
}

/// One descriptor held back for when the process has no other: given up
/// for a moment, it lets the accept loop take one waiting connection, tell
/// it the server is full and close it, instead of leaving it in the queue
/// unanswered (libev's documented remedy for `EMFILE`).
#[derive(Debug)]
pub struct SpareDescriptor(Mutex<Option<File>>);

impl SpareDescriptor {
    pub fn new() -> Self {
        SpareDescriptor(Mutex::new(File::open("/dev/null").ok()))
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<File>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for SpareDescriptor {
    fn default() -> Self {
        Self::new()
    }
}

/// The next connection, or `None` once the server stops accepting.
pub async fn accept_or_stop(
    listener: &TcpListener,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<io::Result<(TcpStream, SocketAddr)>> {
    tokio::select! {
        _ = shutdown.cancelled() => None,
        accepted = listener.accept() => Some(accepted),
    }
}

/// What an accept loop does when `accept` fails. Out of descriptors, it
/// answers the waiting connections with `full` (a "server full" line, or
/// an HTTP 503) and closes them; otherwise it waits a moment.
pub async fn accept_failed(
    listener: &TcpListener,
    error: &io::Error,
    spare: &SpareDescriptor,
    full: &[u8],
) {
    if !error.raw_os_error().is_some_and(is_fd_exhaustion) {
        tracing::warn!(%error, "accept failed; retrying shortly");
        tokio::time::sleep(ACCEPT_BACKOFF).await;
        return;
    }
    // Given up: the descriptor it frees takes the next connection.
    let given_up = spare.slot().take();
    if given_up.is_none() {
        // No spare (it could not be reopened): nothing to answer with.
        tracing::warn!(%error, "out of file descriptors; retrying shortly");
        tokio::time::sleep(ACCEPT_BACKOFF).await;
        return;
    }
    drop(given_up);
    let mut refused = 0;
    // Only the connections already waiting: each is answered at once.
    while let Some(Ok((stream, _))) = listener.accept().now_or_never() {
        // A new connection's send buffer is empty: the answer fits.
        let _ = stream.try_write(full);
        refused += 1;
        drop(stream);
        if refused == 64 {
            break;
        }
    }
    *spare.slot() = File::open("/dev/null").ok();
    tracing::warn!(
        refused,
        "out of file descriptors: newcomers told the server is full"
    );
    if refused == 0 {
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }
}

/// `EMFILE` (this process's limit) or `ENFILE` (the system's), as Linux
/// and the BSDs number them.
fn is_fd_exhaustion(errno: i32) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    errno == EMFILE || errno == ENFILE
}
