//! The server's certificate: where it comes from, how it is made on first
//! start, and how it is swapped on reload.
//!
//! Every TLS listener resolves its certificate through one
//! [`ArcSwap`], per handshake: a reload stores the new one there, so
//! connections made after it get the new certificate and those already
//! up keep theirs (TLS never looks at the certificate again once
//! connected).

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use chrono::Datelike;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::{fingerprint, provider};

/// The names of the generated files, in the directory kept for them.
const CERT_FILE: &str = "cert.pem";
const KEY_FILE: &str = "key.pem";

/// How long a generated certificate is valid: long, since trust in it is a
/// pinned fingerprint, and a new one means every client pins again.
const GENERATED_YEARS: i32 = 10;

/// Where the server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateSource {
    /// The operator's PEM files: a chain (leaf first, as certbot's
    /// `fullchain.pem`) and its private key (`privkey.pem`).
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate made on first start and kept in `dir`,
    /// naming `names` (host names and IP addresses).
    Generated { dir: PathBuf, names: Vec<String> },
}

impl CertificateSource {
    /// The files it is read from (for a generated one, once made).
    fn files(&self) -> (PathBuf, PathBuf) {
        match self {
            CertificateSource::Files { cert, key } => (cert.clone(), key.clone()),
            CertificateSource::Generated { dir, .. } => (dir.join(CERT_FILE), dir.join(KEY_FILE)),
        }
    }
}

/// A certificate ready to serve, and its fingerprint.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    fingerprint: String,
}

/// The certificate every handshake is given: whatever was loaded last.
#[derive(Debug)]
struct CurrentCertificate(Arc<ArcSwap<Loaded>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().key.clone())
    }
}

/// The server's TLS: its certificate (reloadable) and the configurations
/// of the listeners that use it.
#[derive(Debug)]
pub struct ServerTls {
    source: CertificateSource,
    current: Arc<ArcSwap<Loaded>>,
    /// For the text door: no application protocol to negotiate.
    text: Arc<ServerConfig>,
    /// For the web door: HTTP/1.1, the only one it serves.
    web: Arc<ServerConfig>,
}

impl ServerTls {
    /// Loads the certificate from `source`; a generated one is made (and
    /// kept) if it does not exist yet.
    pub fn open(source: CertificateSource) -> anyhow::Result<ServerTls> {
        let loaded = match &source {
            CertificateSource::Files { cert, key } => load_files(cert, key)?,
            CertificateSource::Generated { dir, names } => load_or_generate(dir, names)?,
        };
        let current = Arc::new(ArcSwap::from_pointee(loaded));
        let resolver: Arc<dyn ResolvesServerCert> = Arc::new(CurrentCertificate(current.clone()));
        Ok(ServerTls {
            source,
            text: server_config(resolver.clone(), Vec::new())?,
            web: server_config(resolver, vec![b"http/1.1".to_vec()])?,
            current,
        })
    }

    /// The fingerprint of the certificate served now.
    pub fn fingerprint(&self) -> String {
        self.current.load().fingerprint.clone()
    }

    /// Where the certificate comes from.
    pub fn source(&self) -> &CertificateSource {
        &self.source
    }

    /// Handshakes for the text door.
    pub fn text_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.text.clone())
    }

    /// Handshakes for the web door.
    pub fn web_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.web.clone())
    }

    /// Reads the certificate and key again (SIGHUP): from then on,
    /// handshakes get the new one. If they cannot be read or do not go
    /// together, the one served so far is kept and the error returned.
    /// The new fingerprint on success.
    pub fn reload(&self) -> anyhow::Result<String> {
        let (cert, key) = self.source.files();
        let loaded = load_files(&cert, &key)?;
        let fingerprint = loaded.fingerprint.clone();
        self.current.store(Arc::new(loaded));
        Ok(fingerprint)
    }
}

/// A listener's configuration: rustls's safe defaults (TLS 1.2 and 1.3,
/// no early data, so no 0-RTT replays), no client certificates.
fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: Vec<Vec<u8>>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// Reads a PEM chain and key that must go together.
fn load_files(cert: &Path, key: &Path) -> anyhow::Result<Loaded> {
    let cert_pem = std::fs::read(cert)
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("cannot read the key {}", key.display()))?;
    from_pem(&cert_pem, &key_pem)
        .with_context(|| format!("{} and {}", cert.display(), key.display()))
}

fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Loaded> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate file is not PEM")?;
    let leaf = chain
        .first()
        .context("the certificate file holds no certificate")?;
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .context("the key file holds no private key in PEM")?;
    // Checks that the key is the certificate's.
    let key = CertifiedKey::from_der(chain, key, &provider())
        .context("the key cannot be used with this certificate")?;
    Ok(Loaded {
        key: Arc::new(key),
        fingerprint,
    })
}

/// The certificate kept in `dir`, or a new one made and kept there. If it
/// cannot be kept, it is used anyway, for this run only.
fn load_or_generate(dir: &Path, names: &[String]) -> anyhow::Result<Loaded> {
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    match (cert.exists(), key.exists()) {
        (true, true) => return load_files(&cert, &key),
        (false, false) => {}
        _ => anyhow::bail!(
            "{} holds half of a certificate ({} and {} go together): \
             remove what is there to have a new one made, or give --tls-cert and --tls-key",
            dir.display(),
            CERT_FILE,
            KEY_FILE
        ),
    }
    let (cert_pem, key_pem) = generate(names)?;
    let loaded = from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
    match keep(dir, &cert_pem, &key_pem) {
        Ok(()) => tracing::info!(
            dir = %dir.display(),
            fingerprint = %loaded.fingerprint,
            ?names,
            "made a self-signed TLS certificate"
        ),
        Err(error) => tracing::warn!(
            dir = %dir.display(),
            error = %format!("{error:#}"),
            "cannot keep the new TLS certificate: this one lasts until the server stops, \
             and clients that pin it will refuse the next"
        ),
    }
    Ok(loaded)
}

/// A self-signed certificate for `names`, and its key, in PEM.
fn generate(names: &[String]) -> anyhow::Result<(String, String)> {
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .context("the names for the TLS certificate")?;
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("sockchat on {host}"));
    // An end entity, saying so: tools that meet a self-signed certificate
    // without the constraint take it for a certificate authority.
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let today = chrono::Utc::now().date_naive();
    // Day 28 at most, so the end date exists in every year.
    let (month, day) = (today.month() as u8, today.day().min(28) as u8);
    params.not_before = rcgen::date_time_ymd(today.year(), month, day);
    params.not_after = rcgen::date_time_ymd(today.year() + GENERATED_YEARS, month, day);
    let key = rcgen::KeyPair::generate().context("making a key")?;
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes the key (readable by the server's user only), then the
/// certificate, each whole or not at all: a crash half-way leaves no torn
/// file, and a certificate is never there without its key.
fn keep(dir: &Path, cert_pem: &str, key_pem: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_atomically(&dir.join(KEY_FILE), key_pem.as_bytes(), 0o600)?;
    write_atomically(&dir.join(CERT_FILE), cert_pem.as_bytes(), 0o644)
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let written = options
        .open(&temporary)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()));
    let renamed = written.and_then(|()| std::fs::rename(&temporary, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    renamed.with_context(|| format!("cannot write {}", path.display()))
}

/// The names a generated certificate covers: `localhost` and loopback,
/// this machine's name, and the addresses listened on (for an unspecified
/// one, 0.0.0.0 or ::, every address of this machine's interfaces).
pub fn names_for(listening: &[SocketAddr]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        Ipv4Addr::LOCALHOST.to_string(),
        Ipv6Addr::LOCALHOST.to_string(),
    ];
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let is_dns_name = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'.')
    };
    if is_dns_name(&host) {
        names.push(format!("{host}.local"));
        names.push(host);
    }
    let mut addresses: Vec<IpAddr> = Vec::new();
    for addr in listening {
        if addr.ip().is_unspecified() {
            let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
            addresses.extend(
                interfaces
                    .iter()
                    .map(|interface| interface.ip())
                    .filter(|ip| addr.is_ipv6() || ip.is_ipv4()),
            );
        } else {
            addresses.push(addr.ip());
        }
    }
    names.extend(addresses.iter().map(IpAddr::to_string));
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(name.clone()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(dir: &Path) -> ServerTls {
        ServerTls::open(CertificateSource::Generated {
            dir: dir.to_path_buf(),
            names: names_for(&["127.0.0.1:0".parse().unwrap()]),
        })
        .unwrap()
    }

    #[test]
    fn a_generated_certificate_is_kept_and_used_again() {
        let dir = tempfile::tempdir().unwrap();
        let first = generated(dir.path()).fingerprint();
        assert!(dir.path().join(CERT_FILE).is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the key is the server's alone: {mode:o}");
        }
        assert_eq!(generated(dir.path()).fingerprint(), first);
    }

    #[test]
    fn half_a_certificate_is_refused_with_a_way_out() {
        let dir = tempfile::tempdir().unwrap();
        generated(dir.path());
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let error = ServerTls::open(CertificateSource::Generated {
            dir: dir.path().to_path_buf(),
            names: vec!["localhost".into()],
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("--tls-cert"), "{error:#}");
    }

    #[test]
    fn a_reload_swaps_the_certificate_and_a_bad_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (cert_a, key_a) = generate(&["localhost".into()]).unwrap();
        std::fs::write(&cert, &cert_a).unwrap();
        std::fs::write(&key, &key_a).unwrap();
        let tls = ServerTls::open(CertificateSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        })
        .unwrap();
        let a = tls.fingerprint();
        let (cert_b, key_b) = generate(&["localhost".into()]).unwrap();
        // The new certificate with the old key: they do not go together.
        std::fs::write(&cert, &cert_b).unwrap();
        let error = tls.reload().unwrap_err();
        assert!(format!("{error:#}").contains("cannot be used"), "{error:#}");
        assert_eq!(tls.fingerprint(), a);
        std::fs::write(&key, "not a key").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.fingerprint(), a);
        std::fs::write(&key, &key_b).unwrap();
        let b = tls.reload().unwrap();
        assert_ne!(a, b);
        assert_eq!(tls.fingerprint(), b);
    }

    #[test]
    fn the_names_cover_loopback_the_host_and_the_addresses_listened_on() {
        let names = names_for(&["192.0.2.7:8889".parse().unwrap()]);
        for name in ["localhost", "127.0.0.1", "::1", "192.0.2.7"] {
            assert!(names.contains(&name.to_string()), "{name} in {names:?}");
        }
        let any = names_for(&["0.0.0.0:8889".parse().unwrap()]);
        assert!(!any.contains(&"0.0.0.0".to_string()), "{any:?}");
        assert_eq!(
            any.iter().filter(|name| *name == "127.0.0.1").count(),
            1,
            "{any:?}"
        );
    }
}
