//! Command-line flags and the TOML config file, parsed only: merging and
//! checking happen where the settings are used. Every `serve` flag can
//! also be set in the file's `[serve]` table under the same name, and
//! `connect`'s in `[connect]`. `ServeConfig::from_args` (in
//! `server::config`) and `ClientSettings::from_args` (in
//! `client::settings`) merge them: flags win over the file, the file wins
//! over the defaults. This module imports neither, so the dependency runs
//! one way.
//!
//! Each default is a named constant, shown by `--help` from that constant.
//! To tell a flag left at its default from one given with the same value,
//! parse with [`Cli::parse_args`], which records the flags given (see
//! [`GivenFlags`]).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Deserialize;

use crate::cluster::DEFAULT_LEASE;
use crate::hub::operators::DEFAULT_OPER_RETRY_MS;
use crate::hub::{
    FilterRule, DEFAULT_BIG_ROOM, DEFAULT_HISTORY_LEN, DEFAULT_MAX_CLIENTS, DEFAULT_MAX_PER_IP,
    DEFAULT_MAX_ROOMS, DEFAULT_ROOM, DEFAULT_SENDQ, DEFAULT_SERVER_NAME,
};
use crate::session::limits::{
    DEFAULT_HANDSHAKE_TIMEOUT_SECS, DEFAULT_IDLE_SECS, DEFAULT_IRC_PING_SECS,
    DEFAULT_IRC_PING_TIMEOUT_SECS, DEFAULT_LINE_FLUSH_MS, DEFAULT_LIVENESS_SECS,
    DEFAULT_MAX_DATAGRAM, DEFAULT_MAX_LINE, DEFAULT_MAX_RATE, DEFAULT_STALL_TIMEOUT_MS,
    DEFAULT_UDP_EXPIRY_SECS,
};
use crate::store::{DEFAULT_MAX_AGE_SECS, DEFAULT_MAX_DB_BYTES, DEFAULT_MAX_PER_ROOM};

/// What `sockchat --help` and sockchat(1) say it is.
const LONG_ABOUT: &str = "\
sockchat is one chat server for everyone on a LAN: people on nc or telnet, \
a browser, a UDP script and sockchat's own terminal client talk in the \
same rooms. `sockchat serve` runs the server, `sockchat connect` chats \
with one, and `sockchat bench` measures a chat server (sockchat or \
another).";

/// Where settings come from, for `--help` and the manual.
const FILES: &str = "\
Settings come from the flags, then the config file, then the defaults. \
The config file is the one --config (or SOCKCHAT_CONFIG) names, else \
$XDG_CONFIG_HOME/sockchat/config.toml (~/.config/...) if it exists, else \
/etc/sockchat/config.toml if it exists. Its [serve] table sets any serve \
flag under the same name, its [connect] table the client's. \
`sockchat serve --print-config` prints what the server would run with \
and where each value came from. History is kept in \
$XDG_DATA_HOME/sockchat/history.db (~/.local/share/...) unless --db or \
--no-history says otherwise.";

/// Where the server listens (TCP and UDP) unless told otherwise, and where
/// the client connects: the classic exercises' port, on loopback only.
pub const DEFAULT_TCP: &str = "127.0.0.1:8888";

/// How long one history lookup may run, in ms (see the store's
/// `DEFAULT_LOOKUP_BUDGET`, which this must match).
pub const DEFAULT_SEARCH_BUDGET_MS: u64 = 500;
const _: () = assert!(
    DEFAULT_SEARCH_BUDGET_MS == crate::store::sqlite::DEFAULT_LOOKUP_BUDGET.as_millis() as u64
);

/// Where the TLS door listens unless told otherwise: the port after the
/// text door's.
pub const DEFAULT_TLS: &str = "127.0.0.1:8889";
pub use crate::door::irc::{DEFAULT_IRC, DEFAULT_IRC_TLS};

/// Where the web door listens unless told otherwise.
pub const DEFAULT_WEB: &str = "127.0.0.1:8080";

/// Over UDP, the client's silence in seconds before it sends a keep-alive.
/// It lives here rather than in the client because `--help` shows it, and
/// this module imports nothing from the client.
pub const DEFAULT_KEEPALIVE_SECS: u64 = 30;

// A client on the defaults must not expire on a server on the defaults.
const _: () = assert!(DEFAULT_KEEPALIVE_SECS < DEFAULT_UDP_EXPIRY_SECS);

// Parse it with [`Cli::parse_args`] (or [`Cli::try_parse_args_from`]),
// not clap's `Cli::parse`: only those record which flags were given, and
// without that record a config file would override every flag. (A plain
// comment: a doc comment would become `--help`'s text.)
/// `sockchat`: a chat hub for TCP, UDP and browser clients.
#[derive(Debug, Parser)]
#[command(name = "sockchat", version, about, long_about = LONG_ABOUT, after_long_help = FILES)]
pub struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments; on a bad command line (or `--help`)
    /// prints clap's message and exits.
    pub fn parse_args() -> Cli {
        let matches = Cli::command().get_matches();
        Cli::from_matches(&matches).unwrap_or_else(|error| error.exit())
    }

    /// Parses `args`, the program's name first.
    pub fn try_parse_args_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        Cli::from_matches(&matches)
    }

    fn from_matches(matches: &ArgMatches) -> Result<Cli, clap::Error> {
        let mut cli =
            Cli::from_arg_matches(matches).map_err(|error| error.format(&mut Cli::command()))?;
        if let Some((_, sub)) = matches.subcommand() {
            match &mut cli.command {
                Command::Serve(args) => args.given = GivenFlags::from_matches(sub),
                Command::Connect(args) => args.given = GivenFlags::from_matches(sub),
                Command::Bench(_)
                | Command::Man(_)
                | Command::Completions(_)
                | Command::HashPassword => {}
            }
        }
        Ok(cli)
    }
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
    /// Print a manual page (roff) for sockchat or one of its commands.
    Man(ManArgs),
    /// Print shell completions for bash, zsh, fish, elvish or PowerShell.
    Completions(CompletionsArgs),
    /// Read a password on standard input and print its Argon2 hash, for
    /// `serve --operator NAME:HASH`.
    HashPassword,
}

/// `sockchat man [COMMAND]`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print (serve, connect, bench); without
    /// it, sockchat(1).
    pub command: Option<String>,
}

/// `sockchat completions SHELL`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}

/// The commands with a page of their own, and the page's name.
pub const MAN_PAGES: [(&str, &str); 6] = [
    ("serve", "sockchat-serve"),
    ("connect", "sockchat-connect"),
    ("bench", "sockchat-bench"),
    ("man", "sockchat-man"),
    ("completions", "sockchat-completions"),
    ("hash-password", "sockchat-hash-password"),
];

/// The manual page of `sockchat` or of `sockchat COMMAND`, as roff.
pub fn manual_page(command: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let top = Cli::command();
    let page = match command {
        None => top,
        Some(name) => {
            // Named as man(1) expects a command's page: sockchat-serve.
            let (_, full) = MAN_PAGES
                .iter()
                .find(|(command, _)| *command == name)
                .with_context(|| format!("no command {name:?} (try serve, connect, bench)"))?;
            let sub = top.find_subcommand(name).expect("every page is a command");
            sub.clone()
                .name(*full)
                .bin_name(*full)
                .version(env!("CARGO_PKG_VERSION"))
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page).render(&mut roff)?;
    Ok(roff)
}

/// Shell completions for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "sockchat", &mut script);
    script
}

/// The flags given on the command line or through the environment, by
/// clap id (the field's name, like `max_line`); every other flag holds its
/// default, which the config file may replace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GivenFlags(BTreeSet<String>);

impl GivenFlags {
    /// The flags of one subcommand's matches that were not defaults.
    fn from_matches(matches: &ArgMatches) -> GivenFlags {
        let given = matches.ids().map(|id| id.as_str()).filter(|id| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        });
        GivenFlags(given.map(str::to_string).collect())
    }

    /// Whether the flag with this id was given.
    pub fn contains(&self, id: &str) -> bool {
        self.0.contains(id)
    }

    /// Marks a flag as given, for arguments built in code rather than
    /// parsed.
    pub fn insert(&mut self, id: &str) {
        self.0.insert(id.to_string());
    }
}

/// A listening address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
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

impl From<Listen> for String {
    fn from(listen: Listen) -> String {
        listen.to_string()
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
#[derive(Debug, Clone, Args, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServeArgs {
    /// TOML config file; its [serve] table sets any of these flags.
    /// Without it: ~/.config/sockchat/config.toml, else
    /// /etc/sockchat/config.toml, if one exists.
    #[arg(long, value_name = "PATH", env = "SOCKCHAT_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the settings the server would run with, each with where it
    /// came from (flag, file or default), and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
    /// TCP address, or `off` (0.0.0.0:PORT opens it to the LAN).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_TCP)]
    pub tcp: Listen,
    /// TLS address (the TCP door's lines inside TLS), or `off`.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_TLS)]
    pub tls: Listen,
    /// The TLS certificate chain, PEM, leaf first (certbot's
    /// fullchain.pem works as it is); with --tls-key. Without them, a
    /// self-signed certificate is made on first start and kept in
    /// tls/ beside the history database. SIGHUP reads them again.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key, PEM (certbot's privkey.pem).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Whether the web door also serves HTTPS and WSS, on the same port
    /// as HTTP (told apart by the first byte a browser sends): on or off.
    #[arg(long, value_name = "on|off", default_value = "on", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub web_tls: bool,
    /// IRC address (irssi, WeeChat, HexChat, bots), or `off`.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_IRC)]
    pub irc: Listen,
    /// IRC inside TLS (the --tls certificate), or `off`.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_IRC_TLS)]
    pub irc_tls: Listen,
    /// A file whose text IRC clients get as the message of the day.
    #[arg(long, value_name = "PATH")]
    pub motd: Option<PathBuf>,
    /// UDP address, or `off` (the default is the same port as TCP's).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_TCP)]
    pub udp: Listen,
    /// Web address (the page and its WebSocket), or `off`.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_WEB)]
    pub web: Listen,
    /// An origin (like https://chat.example.org) whose pages may also open
    /// WebSockets here, besides the page's own; repeatable.
    #[arg(long = "web-origin", value_name = "ORIGIN")]
    pub web_origin: Vec<String>,
    /// A host name (like chat.example.org) the web door answers to,
    /// besides IP addresses, localhost and this machine's name; requests
    /// naming any other host are refused (DNS rebinding); repeatable.
    #[arg(long = "web-host", value_name = "NAME")]
    pub web_host: Vec<String>,
    /// A server operator, NAME:HASH, where HASH is what `sockchat
    /// hash-password` prints; repeatable. Operators (IRC's OPER, /oper)
    /// run every room.
    #[arg(long = "operator", value_name = "NAME:HASH")]
    pub operator: Vec<String>,
    /// How long an address waits after a wrong operator password, in ms.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_OPER_RETRY_MS)]
    pub oper_retry_ms: u64,
    /// Join a cluster of sockchat nodes through these NATS servers
    /// (nats://HOST:PORT, comma-separated): rooms, ids and history are
    /// shared by every node. Without it: one node, no NATS.
    #[arg(long, value_name = "URLS")]
    pub cluster: Option<String>,
    /// This node's name in its cluster (logs, listening lines, message
    /// ids): unique in the cluster. Default: the machine's name.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Copies of the cluster's log NATS keeps: 1 on one NATS server, 3 on
    /// a NATS cluster of three (which then survives losing one).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cluster_replicas: usize,
    /// Seconds a node that stopped renewing (it died, or lost NATS) keeps
    /// its members' nicks claimed in the cluster.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_LEASE.as_secs())]
    pub cluster_lease: u64,
    /// The room everyone starts in.
    #[arg(long, value_name = "ROOM", default_value = DEFAULT_ROOM)]
    pub room: String,
    /// The server's name in the welcome line.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_SERVER_NAME)]
    pub name: String,
    /// Rewrite FROM into TO in every relayed message; repeatable.
    #[arg(long = "filter", value_name = "FROM=TO")]
    #[serde(
        deserialize_with = "deserialize_filters",
        serialize_with = "serialize_filters"
    )]
    pub filter: Vec<FilterRule>,
    /// Messages replayed to whoever joins a room.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HISTORY_LEN)]
    pub history: usize,
    /// The history database; without it, sockchat/history.db in the user's
    /// data directory ($XDG_DATA_HOME or the platform's equivalent).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Keep no history on disk (recent messages are still replayed from memory).
    #[arg(long)]
    pub no_history: bool,
    /// Store private messages in the history database too.
    #[arg(long)]
    pub store_private: bool,
    /// Messages kept per room on disk; older ones are deleted (0: no cap).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PER_ROOM)]
    pub history_max_per_room: usize,
    /// Messages older than this many seconds are deleted (0: kept forever).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_MAX_AGE_SECS)]
    pub history_max_age: u64,
    /// Cap on the database file's size; past it, history stops being saved
    /// (with a warning) until retention frees room (0: no cap).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_DB_BYTES)]
    pub db_max_size: u64,
    /// How long one /search (or /history lookup) may run; past it, the
    /// searcher is told the search is too broad. Lookups never delay chat.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_SEARCH_BUDGET_MS)]
    pub search_budget_ms: u64,
    /// Longest line in bytes; longer lines are refused.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE)]
    pub max_line: usize,
    /// Clients at once, all doors together.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CLIENTS)]
    pub max_clients: usize,
    /// Clients at once from one IP address.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_PER_IP)]
    pub max_per_ip: usize,
    /// Messages a second per client, with a burst of max(rate, 5).
    #[arg(long, value_name = "MSGS_PER_SEC", default_value_t = DEFAULT_MAX_RATE)]
    pub max_rate: u32,
    /// Bytes queued for a client (its sendq) past which it is dropped as
    /// too slow (0: no cap). Long before that, at a sixteenth of it (at
    /// most 64 KiB), whoever talks to it is slowed until it catches up.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_SENDQ)]
    pub sendq: usize,
    /// A client that holds its rooms back (its queue past the pressure
    /// mark) and whose connection takes nothing for this long is dropped.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_STALL_TIMEOUT_MS)]
    pub stall_timeout_ms: u64,
    /// How long a new TLS connection may take to finish its handshake, and
    /// a new web connection to send its request's headers (and an HTTP
    /// connection may sit idle between requests), before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_HANDSHAKE_TIMEOUT_SECS)]
    pub handshake_timeout: u64,
    /// A TCP or web peer that vanished without closing (cable pulled,
    /// machine off) is found within this many seconds, by keepalive probes
    /// and a timeout on unacknowledged writes, and leaves (0: off).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_LIVENESS_SECS)]
    pub liveness: u64,
    /// An IRC client silent this many seconds is sent a PING (0: never).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_IRC_PING_SECS)]
    pub irc_ping: u64,
    /// A pinged IRC client that sends nothing for this many seconds more
    /// is dropped ("no answer").
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_IRC_PING_TIMEOUT_SECS)]
    pub irc_ping_timeout: u64,
    /// Rooms with more members than this stop announcing joins and leaves,
    /// and newcomers get a member count instead of the list (0: no limit).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BIG_ROOM)]
    pub big_room: usize,
    /// Rooms one client may be in at once (0: no limit).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ROOMS)]
    pub max_rooms: usize,
    /// Disconnect clients silent for this many seconds (0: off).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_IDLE_SECS)]
    pub idle: u64,
    /// Unterminated text becomes a message after this many quiet ms.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_LINE_FLUSH_MS)]
    pub line_flush_ms: u64,
    /// Largest UDP datagram accepted, in bytes; larger ones get an error.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_DATAGRAM)]
    pub max_datagram: usize,
    /// A UDP client silent this many seconds has left (at least 1).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_UDP_EXPIRY_SECS)]
    pub udp_expiry: u64,
    /// Which of these were given, not left to their defaults.
    #[arg(skip)]
    #[serde(skip)]
    pub given: GivenFlags,
}

/// The same defaults as the flags': a `[serve]` table fills in only what it
/// names.
impl Default for ServeArgs {
    fn default() -> Self {
        ServeArgs {
            config: None,
            print_config: false,
            tcp: default_listen(DEFAULT_TCP),
            tls: default_listen(DEFAULT_TLS),
            tls_cert: None,
            tls_key: None,
            web_tls: true,
            irc: default_listen(DEFAULT_IRC),
            irc_tls: default_listen(DEFAULT_IRC_TLS),
            motd: None,
            udp: default_listen(DEFAULT_TCP),
            web: default_listen(DEFAULT_WEB),
            web_origin: Vec::new(),
            web_host: Vec::new(),
            operator: Vec::new(),
            oper_retry_ms: DEFAULT_OPER_RETRY_MS,
            cluster: None,
            node: None,
            cluster_replicas: 1,
            cluster_lease: DEFAULT_LEASE.as_secs(),
            room: DEFAULT_ROOM.to_string(),
            name: DEFAULT_SERVER_NAME.to_string(),
            filter: Vec::new(),
            history: DEFAULT_HISTORY_LEN,
            db: None,
            no_history: false,
            store_private: false,
            history_max_per_room: DEFAULT_MAX_PER_ROOM,
            history_max_age: DEFAULT_MAX_AGE_SECS,
            db_max_size: DEFAULT_MAX_DB_BYTES,
            search_budget_ms: DEFAULT_SEARCH_BUDGET_MS,
            max_line: DEFAULT_MAX_LINE,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_per_ip: DEFAULT_MAX_PER_IP,
            max_rate: DEFAULT_MAX_RATE,
            sendq: DEFAULT_SENDQ,
            stall_timeout_ms: DEFAULT_STALL_TIMEOUT_MS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT_SECS,
            liveness: DEFAULT_LIVENESS_SECS,
            irc_ping: DEFAULT_IRC_PING_SECS,
            irc_ping_timeout: DEFAULT_IRC_PING_TIMEOUT_SECS,
            big_room: DEFAULT_BIG_ROOM,
            max_rooms: DEFAULT_MAX_ROOMS,
            idle: DEFAULT_IDLE_SECS,
            line_flush_ms: DEFAULT_LINE_FLUSH_MS,
            max_datagram: DEFAULT_MAX_DATAGRAM,
            udp_expiry: DEFAULT_UDP_EXPIRY_SECS,
            given: GivenFlags::default(),
        }
    }
}

fn default_listen(addr: &str) -> Listen {
    addr.parse().expect("the default addresses parse")
}

fn serialize_filters<S: serde::Serializer>(
    filters: &[FilterRule],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(filters.iter().map(ToString::to_string))
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
pub struct ConfigFile {
    /// `[serve]`: any `sockchat serve` flag, under the same name.
    pub serve: ServeArgs,
    /// `[connect]`: the client's defaults.
    pub connect: ConnectFile,
}

/// The config file's `[connect]` table: the client's defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConnectFile {
    /// The server, HOST:PORT.
    pub server: Option<String>,
    /// Nickname to take on arrival.
    pub nick: Option<String>,
    /// Room to join on arrival.
    pub room: Option<String>,
    /// Talk over UDP instead of TCP.
    pub udp: bool,
    /// Talk over TLS.
    pub tls: bool,
    /// Trust only the certificate authorities in this PEM file.
    pub ca: Option<PathBuf>,
    /// The file of servers trusted by fingerprint.
    pub known_servers: Option<PathBuf>,
    /// Over UDP, seconds of silence before a keep-alive.
    pub keepalive: Option<u64>,
    /// `[connect.colors]`: colour names (`red`, `light-blue`, `#ff8800`, ...).
    pub colors: ColorNames,
}

/// `[connect.colors]` as written: colour names (`red`, `light-blue`,
/// `#ff8800`, an ANSI index like `208`). The client turns them into colours.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ColorNames {
    /// Your own nickname.
    pub own: Option<String>,
    /// Joins, leaves and other notices.
    pub system: Option<String>,
    /// Private messages.
    pub private: Option<String>,
    /// Errors.
    pub error: Option<String>,
    /// The status line's background.
    pub status: Option<String>,
    /// Other people's nicknames: each nick always gets the same one.
    pub nicks: Option<Vec<String>>,
}

/// The config file to read: the one named (by `--config` or
/// `SOCKCHAT_CONFIG`), else the user's, else the system's, if one exists.
pub fn config_path(named: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = named {
        return Some(path.to_path_buf());
    }
    let user = dirs::config_dir().map(|dir| dir.join("sockchat").join("config.toml"));
    let system = PathBuf::from(SYSTEM_CONFIG);
    user.into_iter().chain([system]).find(|path| path.is_file())
}

/// The system-wide config file, read when the user has none.
pub const SYSTEM_CONFIG: &str = "/etc/sockchat/config.toml";

/// Reads and parses the config file at `path`.
pub fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad config file {}", path.display()))
}

/// `sockchat connect` flags; the config file's `[connect]` table gives
/// their defaults.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The server, HOST:PORT.
    #[arg(default_value = DEFAULT_TCP)]
    pub server: String,
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
    #[arg(long, conflicts_with = "tls")]
    pub udp: bool,
    /// Talk over TLS (the server's --tls door; without a server given,
    /// 127.0.0.1:8889). A certificate the system's authorities (or --ca)
    /// vouch for is trusted; one they do not is trusted by its
    /// fingerprint, asked about the first time and pinned.
    #[arg(long)]
    pub tls: bool,
    /// With --tls: trust only the certificate authorities in this PEM
    /// file (no fingerprints, no system roots).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<PathBuf>,
    /// With --tls: trust the server only if its certificate has this
    /// fingerprint (as the server prints it: sha256:...), and pin it,
    /// replacing any pinned before. For scripts, which cannot be asked.
    #[arg(long, value_name = "sha256:HEX", requires = "tls",
          value_parser = parse_fingerprint_arg)]
    pub accept_fingerprint: Option<String>,
    /// With --tls: check nothing about the server's certificate. For
    /// tests only: anyone between you and the server can read and change
    /// everything. Says so on every run.
    #[arg(long, requires = "tls", conflicts_with_all = ["ca", "accept_fingerprint"])]
    pub insecure: bool,
    /// The file of servers trusted by fingerprint (like SSH's
    /// known_hosts); default: sockchat/known_servers in the user's data
    /// directory.
    #[arg(long, value_name = "PATH")]
    pub known_servers: Option<PathBuf>,
    /// Over UDP, send a keep-alive after this many silent seconds; keep it
    /// under the server's --udp-expiry.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = DEFAULT_KEEPALIVE_SECS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub keepalive: u64,
    /// TOML config file; its [connect] table sets server, nick, room, udp,
    /// tls, ca, known-servers, keepalive and [connect.colors].
    #[arg(long, value_name = "PATH", env = "SOCKCHAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Which of these were given, not left to their defaults.
    #[arg(skip)]
    pub given: GivenFlags,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_help() -> String {
        let mut command = Cli::command();
        let serve = command
            .find_subcommand_mut("serve")
            .expect("there is a serve command");
        serve.render_long_help().to_string()
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_shows_each_default_once_from_its_constant() {
        let help = serve_help();
        // Each flag's block of help, from its name to the next flag.
        let block = |flag: &str| -> String {
            let start = help
                .find(&format!("      {flag} "))
                .unwrap_or_else(|| panic!("{flag} in:\n{help}"));
            let rest = &help[start + flag.len() + 6..];
            let end = rest.find("\n      --").unwrap_or(rest.len());
            rest[..end].to_string()
        };
        for (flag, default) in [
            ("--max-line", DEFAULT_MAX_LINE.to_string()),
            ("--max-clients", DEFAULT_MAX_CLIENTS.to_string()),
            ("--max-per-ip", DEFAULT_MAX_PER_IP.to_string()),
            ("--max-rooms", DEFAULT_MAX_ROOMS.to_string()),
            (
                "--handshake-timeout",
                DEFAULT_HANDSHAKE_TIMEOUT_SECS.to_string(),
            ),
            ("--history-max-per-room", DEFAULT_MAX_PER_ROOM.to_string()),
            ("--udp-expiry", DEFAULT_UDP_EXPIRY_SECS.to_string()),
            ("--web", DEFAULT_WEB.to_string()),
            ("--tls", DEFAULT_TLS.to_string()),
            ("--web-tls", "on".to_string()),
            ("--irc", DEFAULT_IRC.to_string()),
            ("--irc-tls", DEFAULT_IRC_TLS.to_string()),
            ("--room", DEFAULT_ROOM.to_string()),
        ] {
            let shown = format!("[default: {default}]");
            let text = block(flag);
            assert_eq!(
                text.matches(&shown).count(),
                1,
                "{shown} for {flag}: {text}"
            );
        }
        assert!(help.contains("4096"), "{help}");
    }

    #[test]
    fn a_config_file_table_defaults_to_the_flags_defaults() {
        let parsed = match Cli::try_parse_args_from(["sockchat", "serve"])
            .unwrap()
            .command
        {
            Command::Serve(args) => *args,
            _ => unreachable!("parsed a serve command"),
        };
        let empty_table: ServeArgs = toml::from_str("").unwrap();
        assert_eq!(format!("{parsed:?}"), format!("{:?}", ServeArgs::default()));
        assert_eq!(
            format!("{empty_table:?}"),
            format!("{:?}", ServeArgs::default())
        );
    }

    #[test]
    fn only_flags_on_the_command_line_count_as_given() {
        let cli = Cli::try_parse_args_from([
            "sockchat",
            "serve",
            "--max-line",
            &DEFAULT_MAX_LINE.to_string(),
            "--no-history",
            "--filter",
            "a=b",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            unreachable!("parsed a serve command")
        };
        // Given with the default's value is still given.
        for id in ["max_line", "no_history", "filter"] {
            assert!(args.given.contains(id), "{id}: {:?}", args.given);
        }
        for id in ["tcp", "max_rate", "store_private", "web_origin", "db"] {
            assert!(!args.given.contains(id), "{id}: {:?}", args.given);
        }
        let cli = Cli::try_parse_args_from(["sockchat", "connect", "h:1", "--udp"]).unwrap();
        let Command::Connect(args) = cli.command else {
            unreachable!("parsed a connect command")
        };
        assert!(args.given.contains("server") && args.given.contains("udp"));
        assert!(!args.given.contains("keepalive"));
        assert_eq!(args.keepalive, DEFAULT_KEEPALIVE_SECS);
    }
}

/// A fingerprint as given on the command line, in sockchat's form.
fn parse_fingerprint_arg(text: &str) -> Result<String, String> {
    crate::tls::parse_fingerprint(text).ok_or_else(|| {
        format!("expected sha256: and 64 hex digits (as the server prints it), not {text:?}")
    })
}

/// `sockchat bench` flags.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The server, HOST:PORT (for `--wire ws`, the web door's). Several,
    /// comma-separated (a cluster's nodes): the clients are dealt out
    /// among them in turn, and latency between nodes is reported apart.
    #[arg(default_value = DEFAULT_TCP)]
    pub server: String,
    /// What to speak: tcp (plain lines), irc, udp (sockchat), ws (sockchat).
    #[arg(long, value_enum, default_value = "tcp")]
    pub wire: crate::loadgen::Wire,
    /// Clients connected, all in one room. The defaults fit a server run
    /// with its defaults (per-address and flood limits included).
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// How many of them send.
    #[arg(long, default_value_t = 5)]
    pub senders: usize,
    /// Messages a second per sender; 0 sends as fast as the server takes them.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// With `--rate 0`: write back to back, as fast as TCP takes the bytes
    /// (an open loop), instead of keeping at most 16 messages on their way
    /// to an observer client (a closed loop).
    #[arg(long)]
    pub back_to_back: bool,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds to wait afterwards for deliveries still on the way.
    #[arg(long, default_value_t = 5)]
    pub drain: u64,
    /// The server's process id, to report its CPU time and memory. Given
    /// again (or comma-separated) for a server of several processes (a
    /// cluster's nodes and NATS): their sums are reported, and each one's
    /// CPU time.
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// The IRC channel to use.
    #[arg(long, default_value = "#bench")]
    pub channel: String,
    /// The sockchat room to use (with --greeting, --wire udp or ws): `~`
    /// makes it ephemeral, never stored, and the default room never hears
    /// of the clients.
    #[arg(long, default_value = "~bench")]
    pub room: String,
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
    /// Speak TLS to the server's TLS door (`--wire tcp` or `irc`) or
    /// HTTPS port (`--wire ws`). The certificate is not checked: this
    /// measures what encryption costs.
    #[arg(long)]
    pub tls: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The run these flags describe.
    pub fn plan(&self) -> crate::loadgen::BenchPlan {
        crate::loadgen::BenchPlan {
            server: self.server.clone(),
            wire: self.wire,
            clients: self.clients,
            senders: self.senders,
            rate: self.rate,
            back_to_back: self.back_to_back,
            duration: Duration::from_secs(self.duration),
            drain: Duration::from_secs(self.drain),
            pids: self.pid.clone(),
            channel: self.channel.clone(),
            greeting: self.greeting,
            connect_timeout: Duration::from_secs(self.connect_timeout),
            room: self.room.clone(),
            tls: self.tls,
        }
    }
}
