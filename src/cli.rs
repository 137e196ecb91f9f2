//! Command-line flags and the TOML config file. Every `serve` flag can also
//! be set in the file's `[serve]` table under the same name; flags win.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::hub::{FilterRule, HubConfig, WordFilter};
use crate::protocol::text::normalize_room;
use crate::server::{HistoryConfig, ServeConfig};
use crate::session::Limits as ConnectionLimits;
use crate::store::Retention;

/// Where the server listens (TCP and UDP) unless told otherwise, and where
/// the client connects: the classic exercises' port, on loopback only.
pub const DEFAULT_TCP: &str = "127.0.0.1:8888";

/// Where the web door listens unless told otherwise.
pub const DEFAULT_WEB: &str = "127.0.0.1:8080";

/// The room everyone starts in.
pub const DEFAULT_ROOM: &str = "lobby";

/// Messages kept on disk per room unless told otherwise.
pub const DEFAULT_MAX_PER_ROOM: usize = 100_000;

/// `sockchat`: a chat hub for TCP, UDP and browser clients.
#[derive(Debug, Parser)]
#[command(name = "sockchat", version, about)]
pub struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the chat server.
    Serve(Box<ServeArgs>),
    /// Chat with a server from this terminal (or a pipe).
    Connect(ConnectArgs),
    /// Load a chat server (ours or another) and measure it.
    Bench(BenchArgs),
}

/// A listening address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Listen {
    /// The door is disabled.
    Off,
    /// Listen here (port 0: any free port).
    On(SocketAddr),
}

impl Listen {
    /// The address, or `None` when off.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::On(addr) => Some(addr),
        }
    }
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(Listen::Off);
        }
        text.parse()
            .map(Listen::On)
            .map_err(|_| format!("expected IP:PORT (like {DEFAULT_TCP}) or off, not {text:?}"))
    }
}

impl TryFrom<String> for Listen {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::On(addr) => addr.fmt(f),
        }
    }
}

/// `sockchat serve` flags; also the `[serve]` table of the config file.
/// Limits of 0 are off.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML config file; its [serve] table sets any of these flags.
    #[arg(long, value_name = "PATH", env = "SOCKCHAT_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// TCP address, or `off` [default: 127.0.0.1:8888; 0.0.0.0:8888 opens it to the LAN].
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<Listen>,
    /// UDP address, or `off` [default: 127.0.0.1:8888, the same port as TCP].
    #[arg(long, value_name = "ADDR")]
    pub udp: Option<Listen>,
    /// Web address (the page and its WebSocket), or `off` [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub web: Option<Listen>,
    /// An origin (like https://chat.example.org) whose pages may also open
    /// WebSockets here, besides the page's own; repeatable.
    #[arg(long = "web-origin", value_name = "ORIGIN")]
    pub web_origin: Vec<String>,
    /// The room everyone starts in [default: lobby].
    #[arg(long, value_name = "ROOM")]
    pub room: Option<String>,
    /// The server's name in the welcome line [default: sockchat].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Rewrite FROM into TO in every relayed message; repeatable.
    #[arg(long = "filter", value_name = "FROM=TO")]
    #[serde(deserialize_with = "deserialize_filters")]
    pub filter: Vec<FilterRule>,
    /// Messages replayed to whoever joins a room [default: 20].
    #[arg(long, value_name = "N")]
    pub history: Option<usize>,
    /// The history database [default: $XDG_DATA_HOME/sockchat/history.db].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Keep no history on disk (recent messages are still replayed from memory).
    #[arg(long)]
    pub no_history: bool,
    /// Store private messages in the history database too.
    #[arg(long)]
    pub store_private: bool,
    /// Messages kept per room on disk; older ones are deleted [default: 100000].
    #[arg(long, value_name = "N")]
    pub history_max_per_room: Option<usize>,
    /// Messages older than this many seconds are deleted [default: 0, kept forever].
    #[arg(long, value_name = "SECS")]
    pub history_max_age: Option<u64>,
    /// Cap on the database file's size; past it, history stops being saved
    /// (with a warning) until retention frees room [default: 0, no cap].
    #[arg(long, value_name = "BYTES")]
    pub db_max_size: Option<u64>,
    /// Longest line in bytes; longer lines are refused [default: 4096].
    #[arg(long, value_name = "BYTES")]
    pub max_line: Option<usize>,
    /// Clients at once, all doors together [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_clients: Option<usize>,
    /// Clients at once from one IP address [default: 100].
    #[arg(long, value_name = "N")]
    pub max_per_ip: Option<usize>,
    /// Messages a second per client, with a burst of max(rate, 5) [default: 20].
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub max_rate: Option<u32>,
    /// Events queued for a client before it is dropped as too slow [default: 1024].
    #[arg(long, value_name = "N")]
    pub outbox: Option<usize>,
    /// Rooms with more members than this stop announcing joins and leaves,
    /// and newcomers get a member count instead of the list (0: no limit)
    /// [default: 1000].
    #[arg(long, value_name = "N")]
    pub big_room: Option<usize>,
    /// Disconnect clients silent for this many seconds [default: 0, off].
    #[arg(long, value_name = "SECS")]
    pub idle: Option<u64>,
    /// Unterminated text becomes a message after this many quiet ms [default: 300].
    #[arg(long, value_name = "MS")]
    pub line_flush_ms: Option<u64>,
    /// Largest UDP datagram accepted, in bytes; larger ones get an error [default: 1200].
    #[arg(long, value_name = "BYTES")]
    pub max_datagram: Option<usize>,
    /// A UDP client silent this long has left [default: 120].
    #[arg(long, value_name = "SECS")]
    pub udp_expiry: Option<u64>,
}

fn deserialize_filters<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<FilterRule>, D::Error> {
    let specs = Vec::<String>::deserialize(deserializer)?;
    specs
        .iter()
        .map(|spec| spec.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigFile {
    serve: ServeArgs,
    connect: ConnectFile,
}

/// The config file's `[connect]` table: the client's defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
struct ConnectFile {
    server: Option<String>,
    nick: Option<String>,
    room: Option<String>,
    udp: bool,
    keepalive: Option<u64>,
    /// `[connect.colors]`: colour names (`red`, `light-blue`, `#ff8800`, ...).
    colors: crate::client::tui::ColorNames,
}

impl ServeArgs {
    /// Reads the config file (if any), lets flags win over it, and fills in
    /// defaults.
    pub fn resolve(self) -> anyhow::Result<ServeConfig> {
        let file = match &self.config {
            Some(path) => read_config(path)?.serve,
            None => ServeArgs::default(),
        };
        let merged = self.over(file);
        merged.into_config()
    }

    /// Each setting from `self` where given, else from `file`.
    fn over(self, file: ServeArgs) -> ServeArgs {
        ServeArgs {
            config: self.config,
            tcp: self.tcp.or(file.tcp),
            udp: self.udp.or(file.udp),
            web: self.web.or(file.web),
            web_origin: if self.web_origin.is_empty() {
                file.web_origin
            } else {
                self.web_origin
            },
            room: self.room.or(file.room),
            name: self.name.or(file.name),
            filter: if self.filter.is_empty() {
                file.filter
            } else {
                self.filter
            },
            history: self.history.or(file.history),
            db: self.db.or(file.db),
            no_history: self.no_history || file.no_history,
            store_private: self.store_private || file.store_private,
            history_max_per_room: self.history_max_per_room.or(file.history_max_per_room),
            history_max_age: self.history_max_age.or(file.history_max_age),
            db_max_size: self.db_max_size.or(file.db_max_size),
            max_line: self.max_line.or(file.max_line),
            max_clients: self.max_clients.or(file.max_clients),
            max_per_ip: self.max_per_ip.or(file.max_per_ip),
            max_rate: self.max_rate.or(file.max_rate),
            outbox: self.outbox.or(file.outbox),
            big_room: self.big_room.or(file.big_room),
            idle: self.idle.or(file.idle),
            line_flush_ms: self.line_flush_ms.or(file.line_flush_ms),
            max_datagram: self.max_datagram.or(file.max_datagram),
            udp_expiry: self.udp_expiry.or(file.udp_expiry),
        }
    }

    fn into_config(self) -> anyhow::Result<ServeConfig> {
        let hub_defaults = HubConfig::default();
        let limit_defaults = ConnectionLimits::default();
        let default_addr = || DEFAULT_TCP.parse().expect("the default address parses");
        let tcp = self.tcp.unwrap_or_else(default_addr).addr();
        let udp = self.udp.unwrap_or_else(default_addr).addr();
        let web = self
            .web
            .unwrap_or_else(|| DEFAULT_WEB.parse().expect("the default address parses"))
            .addr();
        let default_room = normalize_room(self.room.as_deref().unwrap_or(DEFAULT_ROOM))
            .map_err(|why| anyhow::anyhow!("--room: {why}"))?;
        let db = match (self.no_history, self.db) {
            (true, _) => None,
            (false, Some(path)) => Some(path),
            (false, None) => Some(default_db_path()?),
        };
        let history = HistoryConfig {
            db,
            max_bytes: self.db_max_size.unwrap_or(0),
            retention: Retention {
                max_per_room: match self.history_max_per_room {
                    Some(0) => None,
                    Some(count) => Some(count),
                    None => Some(DEFAULT_MAX_PER_ROOM),
                },
                max_age: self
                    .history_max_age
                    .filter(|secs| *secs > 0)
                    .map(Duration::from_secs),
            },
        };
        Ok(ServeConfig {
            tcp,
            udp,
            web,
            web_origins: self.web_origin,
            history,
            hub: HubConfig {
                server_name: self.name.unwrap_or(hub_defaults.server_name),
                default_room,
                filter: WordFilter::new(self.filter),
                history_len: self.history.unwrap_or(hub_defaults.history_len),
                max_clients: self.max_clients.unwrap_or(10_000),
                max_per_ip: self.max_per_ip.unwrap_or(100),
                outbox: self.outbox.unwrap_or(hub_defaults.outbox),
                store_private: self.store_private,
                big_room: self.big_room.unwrap_or(hub_defaults.big_room),
                clock: hub_defaults.clock,
            },
            limits: ConnectionLimits {
                max_line: self.max_line.unwrap_or(limit_defaults.max_line),
                max_rate: self.max_rate.unwrap_or(limit_defaults.max_rate),
                idle: self.idle.filter(|secs| *secs > 0).map(Duration::from_secs),
                partial_line_flush: self
                    .line_flush_ms
                    .map_or(limit_defaults.partial_line_flush, Duration::from_millis),
                max_datagram: self.max_datagram.unwrap_or(limit_defaults.max_datagram),
                udp_expiry: match self.udp_expiry {
                    // Expiry cannot be off: UDP has no other way to see a client go.
                    Some(0) => anyhow::bail!("--udp-expiry must be at least 1 second"),
                    Some(secs) => Duration::from_secs(secs),
                    None => limit_defaults.udp_expiry,
                },
            },
        })
    }
}

/// `$XDG_DATA_HOME/sockchat/history.db` (or the platform's equivalent).
fn default_db_path() -> anyhow::Result<PathBuf> {
    let data = dirs::data_dir()
        .context("no data directory is known for this user; give --db PATH or --no-history")?;
    Ok(data.join("sockchat").join("history.db"))
}

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
}

/// `sockchat connect` flags; the config file's `[connect]` table gives
/// their defaults.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The server, HOST:PORT [default: 127.0.0.1:8888].
    pub server: Option<String>,
    /// Nickname to take on arrival.
    #[arg(long)]
    pub nick: Option<String>,
    /// Room to join on arrival.
    #[arg(long)]
    pub room: Option<String>,
    /// Line mode even on a terminal (it is automatic when stdin or stdout
    /// is not a terminal).
    #[arg(long)]
    pub plain: bool,
    /// Send each typed line exactly as typed, with no terminator, and print
    /// whatever arrives: for bare socket servers like the classic exercise.
    #[arg(long)]
    pub raw: bool,
    /// Talk over UDP instead of TCP (with --raw: plain-text datagrams).
    #[arg(long)]
    pub udp: bool,
    /// Over UDP, send a keep-alive after this many silent seconds; keep it
    /// under the server's --udp-expiry [default: 30].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub keepalive: Option<u64>,
    /// TOML config file; its [connect] table sets server, nick, room, udp,
    /// keepalive and [connect.colors].
    #[arg(long, value_name = "PATH", env = "SOCKCHAT_CONFIG")]
    pub config: Option<PathBuf>,
}

/// What `sockchat connect` runs with: flags over the config file over
/// defaults.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub server: String,
    pub nick: Option<String>,
    pub room: Option<String>,
    pub udp: bool,
    pub keepalive: Duration,
    pub theme: crate::client::tui::Theme,
}

impl ClientSettings {
    /// What to send on arrival: the nick, then the room.
    pub fn hello(&self) -> Vec<crate::protocol::ClientCommand> {
        use crate::protocol::ClientCommand;
        let nick = self.nick.clone().map(|nick| ClientCommand::Nick { nick });
        let room = self.room.clone().map(|room| ClientCommand::Join { room });
        nick.into_iter().chain(room).collect()
    }
}

impl ConnectArgs {
    /// Reads the config file (if any) and lets flags win over it.
    pub fn resolve(&self) -> anyhow::Result<ClientSettings> {
        let file = match &self.config {
            Some(path) => read_config(path)?.connect,
            None => ConnectFile::default(),
        };
        Ok(ClientSettings {
            server: self
                .server
                .clone()
                .or(file.server)
                .unwrap_or_else(|| DEFAULT_TCP.to_string()),
            nick: self.nick.clone().or(file.nick),
            room: self.room.clone().or(file.room),
            udp: self.udp || file.udp,
            keepalive: Duration::from_secs(self.keepalive.or(file.keepalive).unwrap_or(30).max(1)),
            theme: crate::client::tui::Theme::from_names(&file.colors)
                .context("[connect.colors] in the config file")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from([&["sockchat", "serve"], args].concat()).unwrap();
        match cli.command {
            Command::Serve(args) => *args,
            _ => unreachable!("parsed a serve command"),
        }
    }

    #[test]
    fn history_flags() {
        let config = parse(&["--no-history"]).resolve().unwrap();
        assert_eq!(config.history.db, None);
        let config = parse(&[
            "--db",
            "/tmp/x.db",
            "--history-max-age",
            "60",
            "--history-max-per-room",
            "0",
        ])
        .resolve()
        .unwrap();
        assert_eq!(config.history.db, Some(PathBuf::from("/tmp/x.db")));
        assert_eq!(
            config.history.retention.max_age,
            Some(Duration::from_secs(60))
        );
        assert_eq!(config.history.retention.max_per_room, None);
    }

    #[test]
    fn defaults() {
        let config = parse(&[]).resolve().unwrap();
        assert!(config.history.db.unwrap().ends_with("sockchat/history.db"));
        assert_eq!(
            config.history.retention.max_per_room,
            Some(DEFAULT_MAX_PER_ROOM)
        );
        assert_eq!(config.tcp, Some(DEFAULT_TCP.parse().unwrap()));
        assert_eq!(config.udp, Some(DEFAULT_TCP.parse().unwrap()));
        assert_eq!(config.web, Some(DEFAULT_WEB.parse().unwrap()));
        assert_eq!(config.limits.max_datagram, 1200);
        assert_eq!(config.hub.default_room, "lobby");
        assert_eq!(config.limits.max_line, 4096);
        assert_eq!(config.limits.idle, None);
    }

    #[test]
    fn off_and_port_zero() {
        assert_eq!(parse(&["--tcp", "off"]).resolve().unwrap().tcp, None);
        assert_eq!(parse(&["--udp", "off"]).resolve().unwrap().udp, None);
        assert!(parse(&["--udp-expiry", "0"]).resolve().is_err());
        let config = parse(&["--tcp", "0.0.0.0:0"]).resolve().unwrap();
        assert_eq!(config.tcp, Some("0.0.0.0:0".parse().unwrap()));
        assert!(Cli::try_parse_from(["sockchat", "serve", "--tcp", "nowhere"]).is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sockchat.toml");
        std::fs::write(
            &path,
            "[serve]\ntcp = \"127.0.0.1:0\"\nmax-line = 100\nmax-rate = 3\nfilter = [\"sb=alexsb\"]\nroom = \"Main\"\n",
        )
        .unwrap();
        let config = parse(&["--config", path.to_str().unwrap(), "--max-rate", "9"])
            .resolve()
            .unwrap();
        assert_eq!(config.tcp, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(config.limits.max_line, 100);
        assert_eq!(config.limits.max_rate, 9);
        assert_eq!(config.hub.default_room, "main");
        assert_eq!(config.hub.filter.apply("sb"), "alexsb");
    }

    #[test]
    fn bad_config_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[serve]\nmax-lines = 3\n").unwrap();
        let error = parse(&["--config", path.to_str().unwrap()])
            .resolve()
            .unwrap_err();
        assert!(format!("{error:#}").contains("max-lines"), "{error:#}");
        let missing = parse(&["--config", "/nonexistent/sockchat.toml"])
            .resolve()
            .unwrap_err();
        assert!(format!("{missing:#}").contains("cannot read config file"));
    }

    fn connect_args(args: &[&str]) -> ConnectArgs {
        let cli = Cli::try_parse_from([&["sockchat", "connect"], args].concat()).unwrap();
        match cli.command {
            Command::Connect(args) => args,
            _ => unreachable!("parsed a connect command"),
        }
    }

    #[test]
    fn the_client_takes_its_defaults_from_the_connect_table_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sockchat.toml");
        std::fs::write(
            &path,
            "[serve]\nmax-rate = 3\n\n[connect]\nserver = \"chat.lan:8888\"\nnick = \"小明\"\n\
             room = \"rust\"\n\n[connect.colors]\nown = \"light-green\"\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let settings = connect_args(&["--config", config]).resolve().unwrap();
        assert_eq!(settings.server, "chat.lan:8888");
        assert_eq!(settings.nick.as_deref(), Some("小明"));
        assert_eq!(settings.keepalive, Duration::from_secs(30));
        assert_eq!(settings.theme.own, ratatui::style::Color::LightGreen);
        let settings = connect_args(&["127.0.0.1:9", "--nick", "bob", "--config", config])
            .resolve()
            .unwrap();
        assert_eq!(
            (
                settings.server.as_str(),
                settings.nick.as_deref(),
                settings.room.as_deref()
            ),
            ("127.0.0.1:9", Some("bob"), Some("rust"))
        );

        std::fs::write(&path, "[connect.colors]\nown = \"sparkly\"\n").unwrap();
        let error = connect_args(&["--config", config]).resolve().unwrap_err();
        assert!(
            format!("{error:#}").contains("\"sparkly\" is not a colour"),
            "{error:#}"
        );
    }
}

/// `sockchat bench` flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The server, HOST:PORT (for `--wire ws`, the web door's).
    #[arg(default_value = DEFAULT_TCP)]
    pub server: String,
    /// What to speak: tcp (plain lines), irc, udp (sockchat), ws (sockchat).
    #[arg(long, value_enum, default_value = "tcp")]
    pub wire: crate::bench::Wire,
    /// Clients connected, all in one room.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// How many of them send.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages a second per sender; 0 sends as fast as the server takes them.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds to wait afterwards for deliveries still on the way.
    #[arg(long, default_value_t = 5)]
    pub drain: u64,
    /// The server's process id, to report its CPU time and memory.
    #[arg(long)]
    pub pid: Option<u32>,
    /// The IRC channel to use.
    #[arg(long, default_value = "#bench")]
    pub channel: String,
    /// With `--wire tcp`: a client counts as seated once the server's first
    /// line arrives (for servers that greet, as sockchat does), not as soon
    /// as TCP connects.
    #[arg(long)]
    pub greeting: bool,
    /// Seconds all the clients may take to be seated; a server slower than
    /// that is measured with those seated so far.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub connect_timeout: u64,
    /// Draw the latency distribution (percentile plot) into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The run these flags describe.
    pub fn plan(&self) -> crate::bench::BenchPlan {
        crate::bench::BenchPlan {
            server: self.server.clone(),
            wire: self.wire,
            clients: self.clients,
            senders: self.senders,
            rate: self.rate,
            duration: Duration::from_secs(self.duration),
            drain: Duration::from_secs(self.drain),
            pid: self.pid,
            channel: self.channel.clone(),
            greeting: self.greeting,
            connect_timeout: Duration::from_secs(self.connect_timeout),
        }
    }
}
