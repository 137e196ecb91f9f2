//! What `sockchat connect` runs with: flags over the config file's
//! `[connect]` table over defaults.

use std::time::Duration;

use anyhow::Context;

use super::link::{ClientTls, Target};
use super::tui::Theme;
use crate::cli::{config_path, read_config, ConnectArgs, ConnectFile, DEFAULT_TLS};
use crate::protocol::ClientCommand;
use crate::tls::trust::{Authorities, KnownServers};

/// The client's settings, merged and checked.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The server, HOST:PORT.
    pub server: String,
    /// Nickname to take on arrival.
    pub nick: Option<String>,
    /// Room to join on arrival.
    pub room: Option<String>,
    /// Talk over UDP instead of TCP.
    pub udp: bool,
    /// Talk over TLS, trusting as this says; `None`: plain TCP.
    pub tls: Option<ClientTls>,
    /// Over UDP, silence before a keep-alive.
    pub keepalive: Duration,
    /// The full-screen client's colours.
    pub theme: Theme,
}

impl ClientSettings {
    /// Reads the config file (the one `--config` names, else the user's
    /// or the system's, if one exists) and takes from its `[connect]`
    /// table every setting not in `args.given`.
    pub fn from_args(args: &ConnectArgs) -> anyhow::Result<ClientSettings> {
        let file = match config_path(args.config.as_deref()) {
            Some(path) => read_config(&path)?.connect,
            None => ConnectFile::default(),
        };
        let given = |id: &str| args.given.contains(id);
        let keepalive = match file.keepalive {
            Some(secs) if !given("keepalive") => secs,
            _ => args.keepalive,
        };
        let udp = if given("udp") { args.udp } else { file.udp };
        let tls = !udp && (args.tls || file.tls);
        let server = match file.server {
            Some(server) if !given("server") => server,
            _ if tls && !given("server") => DEFAULT_TLS.to_string(),
            _ => args.server.clone(),
        };
        let tls = if tls {
            let authorities = match (args.insecure, args.ca.clone().or(file.ca)) {
                (true, _) => Authorities::Nothing,
                (false, Some(ca)) => Authorities::File(ca),
                (false, None) => Authorities::System,
            };
            let known = args
                .known_servers
                .clone()
                .or(file.known_servers)
                .or_else(KnownServers::default_path)
                .context("no data directory is known for this user; give --known-servers PATH")?;
            Some(ClientTls {
                authorities,
                accept: args.accept_fingerprint.clone(),
                known: KnownServers::at(known),
            })
        } else {
            None
        };
        Ok(ClientSettings {
            server,
            tls,
            nick: args.nick.clone().or(file.nick),
            room: args.room.clone().or(file.room),
            udp,
            // The file is not range-checked as the flag is.
            keepalive: Duration::from_secs(keepalive.max(1)),
            theme: Theme::from_names(&file.colors)
                .context("[connect.colors] in the config file")?,
        })
    }

    /// Where to connect over a stream, and how.
    pub fn target(&self) -> Target {
        Target {
            server: self.server.clone(),
            tls: self.tls.clone(),
        }
    }

    /// What to send on arrival: the nick, then the room.
    pub fn hello(&self) -> Vec<ClientCommand> {
        let nick = self.nick.clone().map(|nick| ClientCommand::Nick { nick });
        let room = self.room.clone().map(|room| ClientCommand::Join { room });
        nick.into_iter().chain(room).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, DEFAULT_KEEPALIVE_SECS, DEFAULT_TCP};

    fn connect_args(args: &[&str]) -> ConnectArgs {
        let cli = Cli::try_parse_args_from([&["sockchat", "connect"], args].concat()).unwrap();
        match cli.command {
            Command::Connect(args) => args,
            _ => unreachable!("parsed a connect command"),
        }
    }

    fn settings(args: &[&str]) -> anyhow::Result<ClientSettings> {
        ClientSettings::from_args(&connect_args(args))
    }

    #[test]
    fn defaults() {
        let settings = settings(&[]).unwrap();
        assert_eq!(settings.server, DEFAULT_TCP);
        assert_eq!(
            settings.keepalive,
            Duration::from_secs(DEFAULT_KEEPALIVE_SECS)
        );
        assert!(!settings.udp);
        assert!(settings.hello().is_empty());
    }

    #[test]
    fn the_client_takes_its_defaults_from_the_connect_table_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sockchat.toml");
        std::fs::write(
            &path,
            "[serve]\nmax-rate = 3\n\n[connect]\nserver = \"chat.lan:8888\"\nnick = \"小明\"\n\
             room = \"rust\"\nkeepalive = 10\n\n[connect.colors]\nown = \"light-green\"\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let from_file = settings(&["--config", config]).unwrap();
        assert_eq!(from_file.server, "chat.lan:8888");
        assert_eq!(from_file.nick.as_deref(), Some("小明"));
        assert_eq!(from_file.keepalive, Duration::from_secs(10));
        assert_eq!(from_file.theme.own, ratatui::style::Color::LightGreen);
        let keepalive = DEFAULT_KEEPALIVE_SECS.to_string();
        let flags = settings(&[
            "127.0.0.1:9",
            "--nick",
            "bob",
            "--keepalive",
            &keepalive,
            "--config",
            config,
        ])
        .unwrap();
        assert_eq!(
            (
                flags.server.as_str(),
                flags.nick.as_deref(),
                flags.room.as_deref()
            ),
            ("127.0.0.1:9", Some("bob"), Some("rust"))
        );
        // Given with the default's value, the flag still wins.
        assert_eq!(flags.keepalive, Duration::from_secs(DEFAULT_KEEPALIVE_SECS));

        std::fs::write(&path, "[connect.colors]\nown = \"sparkly\"\n").unwrap();
        let error = settings(&["--config", config]).unwrap_err();
        assert!(
            format!("{error:#}").contains("\"sparkly\" is not a colour"),
            "{error:#}"
        );
    }
}
