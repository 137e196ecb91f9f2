//! How the client decides to trust a server, the way SSH trusts host keys.
//!
//! A certificate a certificate authority vouches for (the system's roots,
//! or the one `--ca` names) is trusted as it is. One no authority vouches
//! for (a server's self-signed default) is trusted by its fingerprint:
//! the one the person accepted the first time (on a terminal, or with
//! `--accept-fingerprint`), pinned in a known-servers file. A pinned
//! server whose certificate changes is refused, loudly. `--insecure`
//! trusts anything, and says so every time.
//!
//! The handshake's verifier ([`ServerTrust`]) only records what it saw and
//! decides; asking the person happens outside the handshake, before a new
//! one ([`Verdict`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::SignatureScheme;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};

use super::{fingerprint, provider};

/// Where the certificates that may vouch for a server come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorities {
    /// The operating system's trusted roots; a server they do not vouch
    /// for may be trusted by its pinned fingerprint.
    System,
    /// Only the certificates in this PEM file (`--ca`); nothing else,
    /// pins included, is trusted.
    File(PathBuf),
    /// Nothing is checked (`--insecure`).
    Nothing,
}

/// What the client will trust for one server.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    pub authorities: Authorities,
    /// The fingerprint the server's certificate must have: given with
    /// `--accept-fingerprint`, or pinned earlier. See [`Expected`].
    pub expected: Option<Expected>,
}

/// A fingerprint the client expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Given on the command line: only a certificate with it is trusted.
    Given(String),
    /// Pinned on an earlier visit: trusted, as is any certificate an
    /// authority vouches for (a server moving to a real certificate).
    Pinned(String),
}

/// What the verifier made of the certificate it was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Trusted: an authority vouches for it, or it has the fingerprint
    /// expected, or nothing is checked.
    Trusted { fingerprint: String },
    /// No authority vouches for it and no fingerprint was pinned: the
    /// person may choose to trust it.
    Unknown { fingerprint: String, why: String },
    /// It is not the certificate pinned (or given): refused.
    Changed { expected: String, seen: String },
    /// The authorities named with `--ca` refuse it.
    Refused { fingerprint: String, why: String },
}

/// The handshake's verifier: checks the certificate per the policy and
/// keeps its verdict for the caller.
#[derive(Debug)]
pub struct ServerTrust {
    policy: TrustPolicy,
    authorities: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    /// Only look: every handshake is abandoned once judged.
    probe: bool,
    verdict: Mutex<Option<Verdict>>,
}

impl ServerTrust {
    /// A verifier for `policy`; with `probe`, one that only looks (the
    /// handshake is abandoned once the certificate is judged). Fails if
    /// `--ca`'s file cannot be used.
    pub fn new(policy: TrustPolicy, probe: bool) -> anyhow::Result<Arc<ServerTrust>> {
        let provider = provider();
        let roots = match &policy.authorities {
            Authorities::System => Some(system_roots()),
            Authorities::File(path) => Some(roots_from(path)?),
            Authorities::Nothing => None,
        };
        let authorities = match roots {
            Some(roots) if !roots.is_empty() => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .context("the certificate authorities")?,
            ),
            _ => None,
        };
        Ok(Arc::new(ServerTrust {
            policy,
            authorities,
            provider,
            probe,
            verdict: Mutex::new(None),
        }))
    }

    /// A client configuration that verifies with `trust`.
    pub fn client_config(trust: &Arc<ServerTrust>) -> anyhow::Result<Arc<ClientConfig>> {
        let config = ClientConfig::builder_with_provider(trust.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .dangerous()
            .with_custom_certificate_verifier(trust.clone())
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// The verdict on the last certificate shown, if one was.
    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn judge(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Verdict {
        let seen = fingerprint(end_entity);
        let vouched = self.authorities.as_ref().map(|authorities| {
            authorities
                .verify_server_cert(end_entity, intermediates, server_name, &[], now)
                .map(|_| ())
                .map_err(|error| error.to_string())
        });
        let trusted = Verdict::Trusted {
            fingerprint: seen.clone(),
        };
        match (&self.policy.authorities, &self.policy.expected, vouched) {
            (Authorities::Nothing, _, _) => trusted,
            (_, Some(Expected::Given(expected)), _) if *expected != seen => Verdict::Changed {
                expected: expected.clone(),
                seen,
            },
            (Authorities::File(_), _, Some(Err(why))) => Verdict::Refused {
                fingerprint: seen,
                why,
            },
            (Authorities::File(_), _, None) => Verdict::Refused {
                fingerprint: seen,
                why: "the --ca file holds no certificate".into(),
            },
            (_, Some(Expected::Given(_)), _) | (_, _, Some(Ok(()))) => trusted,
            (_, Some(Expected::Pinned(pinned)), _) if *pinned == seen => trusted,
            (_, Some(Expected::Pinned(pinned)), _) => Verdict::Changed {
                expected: pinned.clone(),
                seen,
            },
            (_, None, vouched) => Verdict::Unknown {
                fingerprint: seen,
                why: match vouched {
                    Some(Err(why)) => why,
                    _ => "this system has no trusted certificate authorities".into(),
                },
            },
        }
    }
}

impl ServerCertVerifier for ServerTrust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.judge(end_entity, intermediates, server_name, now);
        let trusted = matches!(verdict, Verdict::Trusted { .. });
        *self
            .verdict
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(verdict);
        if trusted && !self.probe {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    // The handshake's signatures are checked whatever trusts the
    // certificate: they prove the server holds its key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The operating system's trusted roots (none, if they cannot be read).
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "a system certificate could not be read");
    }
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    roots
}

/// The certificates of a PEM file, as the only roots.
fn roots_from(path: &Path) -> anyhow::Result<RootCertStore> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificates in {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    let mut roots = RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(certs);
    anyhow::ensure!(
        unusable == 0,
        "{} holds a certificate that cannot be used",
        path.display()
    );
    Ok(roots)
}

/// The known-servers file: one `HOST:PORT sha256:HEX` line per server
/// trusted by its fingerprint, as SSH's `known_hosts` keeps host keys.
/// Lines starting with `#` are comments.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
}

impl KnownServers {
    pub fn at(path: PathBuf) -> Self {
        KnownServers { path }
    }

    /// `$XDG_DATA_HOME/sockchat/known_servers` (or the platform's
    /// equivalent).
    pub fn default_path() -> Option<PathBuf> {
        dirs::data_dir().map(|dir| dir.join("sockchat").join("known_servers"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint pinned for `server`, if there is one.
    pub fn pinned(&self, server: &str) -> anyhow::Result<Option<String>> {
        let key = server_key(server);
        Ok(self
            .entries()?
            .into_iter()
            .find(|(name, _)| *name == key)
            .map(|(_, fingerprint)| fingerprint))
    }

    /// Pins `fingerprint` for `server`, replacing what was pinned.
    pub fn pin(&self, server: &str, fingerprint: &str) -> anyhow::Result<()> {
        let key = server_key(server);
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                "# Servers trusted by their TLS certificate's fingerprint (sockchat connect --tls).\n"
                    .to_string()
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", self.path.display()))
            }
        };
        let mut kept: Vec<&str> = text
            .lines()
            .filter(|line| parse_entry(line).is_none_or(|(name, _)| name != key))
            .collect();
        let entry = format!("{key} {fingerprint}");
        kept.push(&entry);
        let mut out = kept.join("\n");
        out.push('\n');
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let temporary = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        std::fs::File::create(&temporary)
            .and_then(|mut file| file.write_all(out.as_bytes()))
            .and_then(|()| std::fs::rename(&temporary, &self.path))
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn entries(&self) -> anyhow::Result<Vec<(String, String)>> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(text.lines().filter_map(parse_entry).collect()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(error) => {
                Err(error).with_context(|| format!("cannot read {}", self.path.display()))
            }
        }
    }
}

/// A server as the known-servers file names it: lowercase `HOST:PORT`.
fn server_key(server: &str) -> String {
    server.trim().to_ascii_lowercase()
}

fn parse_entry(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    let (name, fingerprint) = line.split_once(char::is_whitespace)?;
    let fingerprint = super::parse_fingerprint(fingerprint)?;
    Some((server_key(name), fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_is_kept_per_server_and_replaced_not_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let known = KnownServers::at(dir.path().join("sub").join("known_servers"));
        let a = fingerprint(b"a");
        let b = fingerprint(b"b");
        assert_eq!(known.pinned("chat.lan:8889").unwrap(), None);
        known.pin("chat.lan:8889", &a).unwrap();
        known.pin("Other:1", &b).unwrap();
        assert_eq!(known.pinned("CHAT.lan:8889").unwrap().as_deref(), Some(&*a));
        known.pin("chat.lan:8889", &b).unwrap();
        assert_eq!(known.pinned("chat.lan:8889").unwrap().as_deref(), Some(&*b));
        assert_eq!(known.pinned("other:1").unwrap().as_deref(), Some(&*b));
        let text = std::fs::read_to_string(known.path()).unwrap();
        assert_eq!(text.matches("chat.lan:8889").count(), 1, "{text}");
        assert!(text.starts_with('#'), "{text}");
    }
}
