//! Reaching the server over a byte stream: plain TCP, or TLS with the
//! trust rules of [`crate::tls::trust`].
//!
//! Trusting a server for the first time needs the person's word, and a
//! handshake cannot wait for it: [`settle_trust`] runs first, before any
//! session, with a handshake that is always abandoned once the
//! certificate is seen (so the server never counts it as a member). If
//! the person trusts what it saw, the sessions after it expect that
//! fingerprint and pin it.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tls::trust::{Authorities, Expected, KnownServers, ServerTrust, TrustPolicy, Verdict};

/// How long to try reaching the server (TCP and TLS handshake each).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the server, whichever it is.
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// What the client trusts over TLS.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub authorities: Authorities,
    /// `--accept-fingerprint`: the fingerprint the server must have; once
    /// seen, it is pinned.
    pub accept: Option<String>,
    pub known: KnownServers,
}

/// Where the client connects, and how.
#[derive(Debug, Clone)]
pub struct Target {
    /// HOST:PORT.
    pub server: String,
    /// `None`: plain TCP.
    pub tls: Option<ClientTls>,
}

/// How a connection is protected, for the status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// Verified TLS, with the server's certificate's fingerprint.
    Tls { fingerprint: String },
    /// TLS with nothing checked (`--insecure`).
    Unchecked,
}

/// An open connection.
pub(crate) struct Link {
    pub stream: Box<dyn ByteStream>,
    pub protection: Option<Protection>,
}

/// Why a connection could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkError {
    /// The server could not be reached (or the handshake failed).
    Unreachable(String),
    /// The server's certificate is not trusted; the message says why and
    /// what to do.
    NotTrusted(String),
}

/// Connects to `target`.
pub(crate) async fn open(target: &Target) -> Result<Link, LinkError> {
    let tcp = connect_tcp(&target.server)
        .await
        .map_err(LinkError::Unreachable)?;
    let Some(tls) = &target.tls else {
        return Ok(Link {
            stream: Box::new(tcp),
            protection: None,
        });
    };
    let pinned = tls
        .known
        .pinned(&target.server)
        .map_err(|error| LinkError::NotTrusted(format!("{error:#}")))?;
    let expected = match (&tls.accept, pinned.clone()) {
        (Some(accept), _) => Some(Expected::Given(accept.clone())),
        (None, Some(pinned)) => Some(Expected::Pinned(pinned)),
        (None, None) => None,
    };
    let policy = TrustPolicy {
        authorities: tls.authorities.clone(),
        expected,
    };
    let (stream, verdict) = handshake(&target.server, tcp, policy, false).await;
    let stream = match stream {
        Ok(stream) => stream,
        Err(error) => {
            return Err(match verdict {
                Some(verdict) => LinkError::NotTrusted(explain(&target.server, tls, &verdict)),
                None => LinkError::Unreachable(format!("TLS handshake: {error}")),
            })
        }
    };
    let protection = match (&tls.authorities, verdict) {
        (Authorities::Nothing, _) => Protection::Unchecked,
        (_, Some(Verdict::Trusted { fingerprint })) => {
            // Trusted by the fingerprint given: pinned for next time.
            if tls.accept.as_ref() == Some(&fingerprint) && pinned.as_ref() != Some(&fingerprint) {
                if let Err(error) = tls.known.pin(&target.server, &fingerprint) {
                    tracing::warn!(error = %format!("{error:#}"), "cannot pin the fingerprint");
                }
            }
            Protection::Tls { fingerprint }
        }
        _ => Protection::Unchecked,
    };
    Ok(Link {
        stream: Box::new(stream),
        protection: Some(protection),
    })
}

/// Before any session, for a server reached over TLS with nothing yet to
/// expect of it: looks at its certificate, and if no authority vouches
/// for it, asks the person (on a terminal) whether to trust it. Returns
/// the target the sessions should use (expecting what was accepted).
pub(crate) async fn settle_trust(target: Target) -> Result<Target, LinkError> {
    let Some(tls) = &target.tls else {
        return Ok(target);
    };
    let nothing_yet = tls.authorities == Authorities::System
        && tls.accept.is_none()
        && matches!(tls.known.pinned(&target.server), Ok(None));
    if !nothing_yet {
        return Ok(target);
    }
    let tcp = connect_tcp(&target.server)
        .await
        .map_err(LinkError::Unreachable)?;
    let policy = TrustPolicy {
        authorities: Authorities::System,
        expected: None,
    };
    let (_, verdict) = handshake(&target.server, tcp, policy, true).await;
    let fingerprint = match verdict {
        Some(Verdict::Trusted { .. }) => return Ok(target),
        Some(Verdict::Unknown { fingerprint, why }) if can_ask() => {
            if !ask_to_trust(&target.server, &fingerprint, &why) {
                return Err(LinkError::NotTrusted(
                    "not trusted; nothing was sent".into(),
                ));
            }
            fingerprint
        }
        Some(verdict) => {
            return Err(LinkError::NotTrusted(explain(
                &target.server,
                tls,
                &verdict,
            )))
        }
        None => return Err(LinkError::Unreachable("the TLS handshake failed".into())),
    };
    let mut target = target;
    if let Some(tls) = target.tls.as_mut() {
        tls.accept = Some(fingerprint);
    }
    Ok(target)
}

/// A TLS handshake over `tcp` under `policy`; with `probe`, abandoned once
/// the certificate is judged. The stream (if the handshake completed) and
/// the verdict on the certificate (if one was shown).
async fn handshake(
    server: &str,
    tcp: TcpStream,
    policy: TrustPolicy,
    probe: bool,
) -> (
    Result<tokio_rustls::client::TlsStream<TcpStream>, String>,
    Option<Verdict>,
) {
    let trust = match ServerTrust::new(policy, probe) {
        Ok(trust) => trust,
        Err(error) => return (Err(format!("{error:#}")), None),
    };
    let config = match ServerTrust::client_config(&trust) {
        Ok(config) => config,
        Err(error) => return (Err(format!("{error:#}")), None),
    };
    let name = match server_name(server) {
        Some(name) => name,
        None => return (Err(format!("{server:?} is not HOST:PORT")), None),
    };
    let connecting = TlsConnector::from(config).connect(name, tcp);
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_string()),
    };
    let verdict = trust.verdict();
    // A verdict that trusts is only worth reporting once the handshake
    // has proven the server holds the certificate's key.
    match (&stream, verdict) {
        (Err(_), Some(Verdict::Trusted { .. })) if !probe => (stream, None),
        (_, verdict) => (stream, verdict),
    }
}

/// The name the certificate must carry: the host part of HOST:PORT.
fn server_name(server: &str) -> Option<ServerName<'static>> {
    let (host, _port) = server.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).ok()
}

/// Connects over TCP (with [`CONNECT_TIMEOUT`]).
pub(crate) async fn connect_tcp(server: &str) -> Result<TcpStream, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

/// Whether there is a person to ask: stdin and stderr on a terminal.
fn can_ask() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Shows the fingerprint and asks whether to trust it; true on yes.
fn ask_to_trust(server: &str, fingerprint: &str, why: &str) -> bool {
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "The server at {server} has a certificate no authority vouches for ({why}).\n\
         Its fingerprint is\n    {fingerprint}\n\
         Check it against the one the server printed when it started\n\
         (`listening tls ADDR sha256:...`), or ask its operator.\n\
         Trust it, and remember it for next time? [y/N] "
    );
    let _ = err.flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// What to tell the person about a certificate not trusted.
fn explain(server: &str, tls: &ClientTls, verdict: &Verdict) -> String {
    match verdict {
        Verdict::Trusted { .. } => "trusted".into(),
        Verdict::Unknown { fingerprint, why } => format!(
            "the server's certificate is not trusted ({why}); its fingerprint is {fingerprint}.\n\
             If that is the fingerprint the server printed (`listening tls ADDR sha256:...`), \
             trust it with:\n    sockchat connect --tls {server} --accept-fingerprint {fingerprint}"
        ),
        Verdict::Changed { expected, seen } if tls.accept.as_ref() == Some(expected) => format!(
            "the server's certificate is not the one given with --accept-fingerprint.\n\
             \x20   expected: {expected}\n\
             \x20   seen:     {seen}\n\
             Nothing was sent."
        ),
        Verdict::Changed { expected, seen } => format!(
            "WARNING: THE SERVER'S CERTIFICATE HAS CHANGED. Nothing was sent.\n\
             \x20   pinned: {expected}\n\
             \x20   now:    {seen}\n\
             Someone may be intercepting this connection, or the server was given a new \
             certificate. Ask its operator which fingerprint it prints now; if it is the new \
             one, trust it (the pin in {} is replaced) with:\n\
             \x20   sockchat connect --tls {server} --accept-fingerprint {seen}",
            tls.known.path().display()
        ),
        Verdict::Refused { fingerprint, why } => format!(
            "the server's certificate is refused by the --ca authorities ({why}); \
             its fingerprint is {fingerprint}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_checked_is_the_host_of_host_and_port() {
        assert!(matches!(
            server_name("127.0.0.1:8889"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:8889"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("chat.lan:8889"),
            Some(ServerName::DnsName(_))
        ));
        assert_eq!(server_name("no-port"), None);
    }
}
