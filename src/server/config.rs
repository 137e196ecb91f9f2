//! What `sockchat serve` runs with, once flags, config file and defaults
//! are merged.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::hub::HubConfig;
use crate::session::Limits;
use crate::store::Retention;

/// Where and how history is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryConfig {
    /// The SQLite file; `None` keeps no history on disk.
    pub db: Option<PathBuf>,
    /// Cap on the file's size in bytes; 0 is none.
    pub max_bytes: u64,
    pub retention: Retention,
}

/// Everything `sockchat serve` needs.
#[derive(Debug, Clone, Default)]
pub struct ServeConfig {
    pub history: HistoryConfig,
    /// Where the TCP door listens; `None` turns it off.
    pub tcp: Option<SocketAddr>,
    /// Where the UDP door listens; `None` turns it off.
    pub udp: Option<SocketAddr>,
    /// Where the web door (page and WebSocket) listens; `None` turns it off.
    pub web: Option<SocketAddr>,
    /// Origins besides the page's own whose pages may open WebSockets.
    pub web_origins: Vec<String>,
    pub hub: HubConfig,
    pub limits: Limits,
}
