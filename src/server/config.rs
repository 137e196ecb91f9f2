//! What `sockchat serve` runs with, once flags, config file and defaults
//! are merged: flags win over the file, the file wins over the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::cli::{config_path, read_config, ServeArgs};
use crate::cluster::ClusterConfig;
use crate::hub::{HubConfig, WordFilter};
use crate::protocol::text::normalize_room;
use crate::session::limits::idle_limit;
use crate::session::{Keepalive, Limits};
use crate::store::sqlite::DEFAULT_LOOKUP_BUDGET;
use crate::store::Retention;
use crate::tls::certificate::names_for;
use crate::tls::CertificateSource;

/// Where and how history is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// The SQLite file; `None` keeps no history on disk.
    pub db: Option<PathBuf>,
    /// Cap on the file's size in bytes; 0 is none.
    pub max_bytes: u64,
    pub retention: Retention,
    /// How long one lookup (`/search`, `/history`) may run.
    pub lookup_budget: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            db: None,
            max_bytes: 0,
            retention: Retention::default(),
            lookup_budget: DEFAULT_LOOKUP_BUDGET,
        }
    }
}

/// Everything `sockchat serve` needs.
#[derive(Debug, Clone, Default)]
pub struct ServeConfig {
    pub history: HistoryConfig,
    /// Where the TCP door listens; `None` turns it off.
    pub tcp: Option<SocketAddr>,
    /// Where the TLS door listens; `None` turns it off.
    pub tls: Option<SocketAddr>,
    /// Whether the web door serves HTTPS too (on its one port).
    pub web_tls: bool,
    /// The certificate for the TLS door and HTTPS; `None` when neither is
    /// on.
    pub certificate: Option<CertificateSource>,
    /// Where the IRC door listens, plain and inside TLS; `None` turns each
    /// off.
    pub irc: Option<SocketAddr>,
    pub irc_tls: Option<SocketAddr>,
    /// What IRC clients get as the message of the day.
    pub motd: Option<String>,
    /// Where the UDP door listens; `None` turns it off.
    pub udp: Option<SocketAddr>,
    /// Where the web door (page and WebSocket) listens; `None` turns it off.
    pub web: Option<SocketAddr>,
    /// Origins besides the page's own whose pages may open WebSockets.
    pub web_origins: Vec<String>,
    /// Host names the web door answers to besides IP addresses, localhost
    /// and the machine's own name.
    pub web_hosts: Vec<String>,
    pub hub: HubConfig,
    pub limits: Limits,
    /// The cluster this node joins, if any.
    pub cluster: Option<ClusterConfig>,
}

impl ServeConfig {
    /// Reads the config file named by `--config` (if any), takes from its
    /// `[serve]` table every setting not in `args.given`, and checks the
    /// result. Without a config file, `args` is taken as it is.
    pub fn from_args(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        ServeConfig::from_merged(merge(args)?.0)
    }

    /// What `--print-config` shows: every setting the server would run
    /// with, as the `[serve]` table of a config file, each with where it
    /// came from.
    pub fn describe(args: ServeArgs) -> anyhow::Result<String> {
        let (merged, file) = merge(args)?;
        // Checked as a start would check them.
        ServeConfig::from_merged(merged.clone())?;
        let file_keys: Vec<String> = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)?;
                let table: toml::Table = toml::from_str(&text)?;
                match table.get("serve") {
                    Some(toml::Value::Table(serve)) => serve.keys().cloned().collect(),
                    _ => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        let mut values = toml::Table::try_from(&merged)?;
        if !merged.no_history && merged.db.is_none() {
            let db = default_db_path()?.display().to_string();
            values.insert("db".into(), toml::Value::String(db));
        }
        let mut out = String::from(
            "# sockchat serve: the settings it would run with, and where each came from\n",
        );
        match &file {
            Some(path) => out.push_str(&format!("# config file: {}\n", path.display())),
            None => out.push_str("# config file: none\n"),
        }
        out.push_str("[serve]\n");
        for (key, value) in &values {
            let source = if merged.given.contains(&key.replace('-', "_")) {
                "flag"
            } else if file_keys.contains(key) {
                "file"
            } else {
                "default"
            };
            let line = format!("{key} = {value}");
            out.push_str(&format!("{line:<44} # {source}\n"));
        }
        Ok(out)
    }

    fn from_merged(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let default_room =
            normalize_room(&args.room).map_err(|why| anyhow::anyhow!("--room: {why}"))?;
        let operators = args
            .operator
            .iter()
            .map(|spec| {
                spec.parse()
                    .map_err(|why| anyhow::anyhow!("--operator: {why}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let operators = crate::hub::operators::Operators::new(operators)
            .map_err(|why| anyhow::anyhow!("--operator: {why}"))?;
        // Expiry cannot be off: UDP has no other way to see a client go.
        anyhow::ensure!(
            args.udp_expiry > 0,
            "--udp-expiry must be at least 1 second"
        );
        let node = node_name(&args);
        let db = match (args.no_history, args.db) {
            (true, _) => None,
            (false, Some(path)) => Some(path),
            (false, None) => Some(default_db_path()?),
        };
        let history = HistoryConfig {
            db,
            max_bytes: args.db_max_size,
            lookup_budget: Duration::from_millis(args.search_budget_ms.max(1)),
            retention: Retention {
                max_per_room: (args.history_max_per_room > 0).then_some(args.history_max_per_room),
                max_age: (args.history_max_age > 0)
                    .then(|| Duration::from_secs(args.history_max_age)),
            },
        };
        let cluster = match &args.cluster {
            Some(urls) => {
                anyhow::ensure!(
                    !args.store_private,
                    "--store-private is not served in a cluster yet"
                );
                anyhow::ensure!(
                    (1..=5).contains(&args.cluster_replicas),
                    "--cluster-replicas is 1 to 5 (JetStream's range)"
                );
                let node = node.unwrap_or_default();
                anyhow::ensure!(
                    !node.is_empty() && !node.contains(['/', ' ', '.', '*', '>']),
                    "--node: one word without '/', '.', '*' or '>'"
                );
                let urls: Vec<String> = urls
                    .split(',')
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(String::from)
                    .collect();
                anyhow::ensure!(!urls.is_empty(), "--cluster: no NATS server given");
                Some(ClusterConfig {
                    urls,
                    node,
                    replicas: args.cluster_replicas,
                    max_age: history.retention.max_age,
                    max_per_room: history.retention.max_per_room,
                    lease: Duration::from_secs(args.cluster_lease.max(1)),
                })
            }
            None => None,
        };
        let web_tls = args.web_tls && args.web.addr().is_some();
        let certificate = match (&args.tls_cert, &args.tls_key) {
            _ if args.tls.addr().is_none() && args.irc_tls.addr().is_none() && !web_tls => None,
            (Some(cert), Some(key)) => Some(CertificateSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => {
                let dir = match &history.db {
                    Some(db) => db.parent().map(Path::to_path_buf).unwrap_or_default(),
                    None => default_data_dir()?,
                };
                let listening: Vec<SocketAddr> =
                    [args.tls.addr(), args.web.addr(), args.irc_tls.addr()]
                        .into_iter()
                        .flatten()
                        .collect();
                Some(CertificateSource::Generated {
                    dir: dir.join("tls"),
                    names: names_for(&listening),
                })
            }
            _ => anyhow::bail!("--tls-cert and --tls-key go together: give both, or neither"),
        };
        let motd = match &args.motd {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the MOTD {}", path.display()))?,
            ),
            None => None,
        };
        Ok(ServeConfig {
            cluster,
            tls: args.tls.addr(),
            irc: args.irc.addr(),
            irc_tls: args.irc_tls.addr(),
            motd,
            web_tls,
            certificate,
            tcp: args.tcp.addr(),
            udp: args.udp.addr(),
            web: args.web.addr(),
            web_origins: args.web_origin,
            web_hosts: args.web_host,
            history,
            hub: HubConfig {
                server_name: args.name,
                default_room,
                filter: WordFilter::new(args.filter),
                history_len: args.history,
                max_clients: args.max_clients,
                max_per_ip: args.max_per_ip,
                sendq: args.sendq,
                store_private: args.store_private,
                big_room: args.big_room,
                max_rooms: args.max_rooms,
                operators,
                oper_retry_ms: args.oper_retry_ms,
                ..HubConfig::default()
            },
            limits: Limits {
                max_line: args.max_line,
                max_rate: args.max_rate,
                idle: idle_limit(args.idle),
                partial_line_flush: Duration::from_millis(args.line_flush_ms),
                max_datagram: args.max_datagram,
                udp_expiry: Duration::from_secs(args.udp_expiry),
                stall_timeout: Duration::from_millis(args.stall_timeout_ms),
                handshake_timeout: Duration::from_secs(args.handshake_timeout.max(1)),
                liveness: idle_limit(args.liveness),
                keepalive: Keepalive::from_secs(args.irc_ping, args.irc_ping_timeout),
            },
        })
    }
}

/// The flags merged over the config file (the one named, else the user's
/// or the system's; see [`config_path`]), and the file used, if any.
fn merge(args: ServeArgs) -> anyhow::Result<(ServeArgs, Option<PathBuf>)> {
    match config_path(args.config.as_deref()) {
        Some(path) => {
            let file = read_config(&path)?.serve;
            Ok((flags_over_file(args, file), Some(path)))
        }
        None => Ok((args, None)),
    }
}

/// Each setting from `flags` where it was given, else from `file`. The
/// struct literal names every field, so a new flag cannot be forgotten
/// here; the clap id checked is the field's name.
fn flags_over_file(flags: ServeArgs, file: ServeArgs) -> ServeArgs {
    macro_rules! merge {
        ($($field:ident),* $(,)?) => {
            ServeArgs {
                config: flags.config,
                print_config: flags.print_config,
                $($field: if flags.given.contains(stringify!($field)) {
                    flags.$field
                } else {
                    file.$field
                },)*
                given: flags.given,
            }
        };
    }
    merge!(
        tcp,
        tls,
        tls_cert,
        tls_key,
        web_tls,
        irc,
        irc_tls,
        motd,
        udp,
        web,
        web_origin,
        web_host,
        operator,
        room,
        name,
        filter,
        history,
        db,
        no_history,
        store_private,
        history_max_per_room,
        history_max_age,
        db_max_size,
        search_budget_ms,
        max_line,
        max_clients,
        max_per_ip,
        max_rate,
        sendq,
        stall_timeout_ms,
        handshake_timeout,
        liveness,
        irc_ping,
        irc_ping_timeout,
        big_room,
        max_rooms,
        oper_retry_ms,
        cluster,
        node,
        cluster_replicas,
        cluster_lease,
        idle,
        line_flush_ms,
        max_datagram,
        udp_expiry,
    )
}

/// `$XDG_DATA_HOME/sockchat/history.db` (or the platform's equivalent).
fn default_db_path() -> anyhow::Result<PathBuf> {
    Ok(default_data_dir()?.join("history.db"))
}

/// `$XDG_DATA_HOME/sockchat` (or the platform's equivalent).
fn default_data_dir() -> anyhow::Result<PathBuf> {
    let data = dirs::data_dir()
        .context("no data directory is known for this user; give --db PATH or --no-history")?;
    Ok(data.join("sockchat"))
}

/// The name a `serve` with `--cluster` runs under as a node: `--node`, or
/// the host's name. `None` outside a cluster.
pub fn node_name(args: &ServeArgs) -> Option<String> {
    args.cluster.as_ref()?;
    Some(match &args.node {
        Some(node) => node.clone(),
        None => gethostname::gethostname().to_string_lossy().into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, DEFAULT_TCP, DEFAULT_WEB};
    use crate::session::limits::{DEFAULT_MAX_LINE, DEFAULT_MAX_RATE};
    use crate::store::DEFAULT_MAX_PER_ROOM;

    fn parse(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_args_from([&["sockchat", "serve"], args].concat()).unwrap();
        match cli.command {
            Command::Serve(args) => *args,
            _ => unreachable!("parsed a serve command"),
        }
    }

    fn resolve(args: &[&str]) -> anyhow::Result<ServeConfig> {
        ServeConfig::from_args(parse(args))
    }

    #[test]
    fn history_flags() {
        let config = resolve(&["--no-history"]).unwrap();
        assert_eq!(config.history.db, None);
        let config = resolve(&[
            "--db",
            "/tmp/x.db",
            "--history-max-age",
            "60",
            "--history-max-per-room",
            "0",
        ])
        .unwrap();
        assert_eq!(config.history.db, Some(PathBuf::from("/tmp/x.db")));
        assert_eq!(
            config.history.retention.max_age,
            Some(Duration::from_secs(60))
        );
        assert_eq!(config.history.retention.max_per_room, None);
    }

    #[test]
    fn operators_are_names_and_hashes() {
        let hash = crate::hub::operators::hash_password("sesame").unwrap();
        let spec = format!("admin:{hash}");
        let config = resolve(&["--operator", &spec]).unwrap();
        assert_eq!(config.hub.operators.len(), 1);
        let first = config.hub.operators.iter().next().unwrap();
        assert_eq!(first.name, "admin");
        // A password where the hash belongs is refused at start.
        let plain = resolve(&["--operator", "admin:sesame"]).unwrap_err();
        assert!(plain.to_string().contains("hash-password"), "{plain}");
    }

    #[test]
    fn defaults() {
        let config = resolve(&[]).unwrap();
        assert!(config.history.db.unwrap().ends_with("sockchat/history.db"));
        assert_eq!(
            config.history.retention.max_per_room,
            Some(DEFAULT_MAX_PER_ROOM)
        );
        assert_eq!(config.history.retention.max_age, None);
        assert_eq!(config.tcp, Some(DEFAULT_TCP.parse().unwrap()));
        assert_eq!(config.udp, Some(DEFAULT_TCP.parse().unwrap()));
        assert_eq!(config.web, Some(DEFAULT_WEB.parse().unwrap()));
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.limits.max_datagram, 1200);
        assert_eq!(config.hub.default_room, "lobby");
        assert_eq!(config.limits.max_line, 4096);
        assert_eq!(config.limits.idle, None);
        let hub = HubConfig::default();
        assert_eq!(config.hub.server_name, hub.server_name);
        assert_eq!(config.hub.history_len, hub.history_len);
        assert_eq!(
            (config.hub.max_clients, config.hub.max_per_ip),
            (hub.max_clients, hub.max_per_ip)
        );
        assert_eq!(
            (config.hub.sendq, config.hub.big_room),
            (hub.sendq, hub.big_room)
        );
    }

    #[test]
    fn off_and_port_zero() {
        assert_eq!(resolve(&["--tcp", "off"]).unwrap().tcp, None);
        assert_eq!(resolve(&["--udp", "off"]).unwrap().udp, None);
        assert!(resolve(&["--udp-expiry", "0"]).is_err());
        let config = resolve(&["--tcp", "0.0.0.0:0"]).unwrap();
        assert_eq!(config.tcp, Some("0.0.0.0:0".parse().unwrap()));
        assert!(Cli::try_parse_args_from(["sockchat", "serve", "--tcp", "nowhere"]).is_err());
    }

    #[test]
    fn the_certificate_is_the_operators_or_made_beside_the_history() {
        let config = resolve(&["--db", "/srv/chat/history.db"]).unwrap();
        assert_eq!(config.tls, Some(crate::cli::DEFAULT_TLS.parse().unwrap()));
        assert!(config.web_tls);
        match config.certificate {
            Some(CertificateSource::Generated { dir, names }) => {
                assert_eq!(dir, PathBuf::from("/srv/chat/tls"));
                assert!(names.contains(&"localhost".to_string()), "{names:?}");
            }
            other => panic!("a generated certificate, not {other:?}"),
        }
        let config = resolve(&["--tls-cert", "/c.pem", "--tls-key", "/k.pem"]).unwrap();
        assert_eq!(
            config.certificate,
            Some(CertificateSource::Files {
                cert: "/c.pem".into(),
                key: "/k.pem".into()
            })
        );
        // Half a pair is refused on the command line...
        assert!(Cli::try_parse_args_from(["sockchat", "serve", "--tls-cert", "/c.pem"]).is_err());
        // ... and nothing is made when nothing needs it.
        let all_off = ["--tls", "off", "--irc-tls", "off"];
        let config = resolve(&[&all_off[..], &["--web-tls", "off"]].concat()).unwrap();
        assert_eq!((config.tls, config.certificate), (None, None));
        let config = resolve(&[&all_off[..], &["--web", "off"]].concat()).unwrap();
        assert_eq!(config.certificate, None);
        // IRC over TLS alone needs one too.
        let config = resolve(&["--tls", "off", "--web", "off"]).unwrap();
        assert_eq!(
            config.irc_tls,
            Some(crate::cli::DEFAULT_IRC_TLS.parse().unwrap())
        );
        assert!(config.certificate.is_some());
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
        let config = resolve(&["--config", path.to_str().unwrap(), "--max-rate", "9"]).unwrap();
        assert_eq!(config.tcp, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(config.limits.max_line, 100);
        assert_eq!(config.limits.max_rate, 9);
        assert_eq!(config.hub.default_room, "main");
        assert_eq!(config.hub.filter.apply("sb"), "alexsb");
    }

    #[test]
    fn the_file_fills_in_flags_left_at_their_defaults_but_a_flag_given_its_default_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sockchat.toml");
        std::fs::write(
            &path,
            "[serve]\nmax-line = 100\nmax-rate = 3\nno-history = true\nweb = \"off\"\nudp-expiry = 0\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        // The file's udp-expiry of 0 is refused like the flag's.
        let error = resolve(&["--config", config]).unwrap_err();
        assert!(format!("{error:#}").contains("--udp-expiry"), "{error:#}");
        let max_rate = DEFAULT_MAX_RATE.to_string();
        let resolved = resolve(&[
            "--config",
            config,
            "--udp-expiry",
            "60",
            "--max-rate",
            &max_rate,
        ])
        .unwrap();
        assert_eq!(resolved.limits.max_line, 100, "not given: from the file");
        assert_ne!(DEFAULT_MAX_LINE, 100);
        assert_eq!(
            resolved.limits.max_rate, DEFAULT_MAX_RATE,
            "given: the flag"
        );
        assert_eq!(resolved.limits.udp_expiry, Duration::from_secs(60));
        assert_eq!(resolved.history.db, None);
        assert_eq!(resolved.web, None);
    }

    #[test]
    fn bad_config_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[serve]\nmax-lines = 3\n").unwrap();
        let error = resolve(&["--config", path.to_str().unwrap()]).unwrap_err();
        assert!(format!("{error:#}").contains("max-lines"), "{error:#}");
        let missing = resolve(&["--config", "/nonexistent/sockchat.toml"]).unwrap_err();
        assert!(format!("{missing:#}").contains("cannot read config file"));
    }
}
