//! TLS for the stream doors and the client, on rustls (TLS 1.2 and 1.3
//! only, no 0-RTT: its defaults).
//!
//! - [`certificate`]: the server's certificate: the operator's PEM files,
//!   or one made on first start and kept; swapped on reload without
//!   dropping anyone.
//! - [`trust`]: how the client decides to trust a server: the system's
//!   roots or a given CA, else the fingerprint pinned on first use in a
//!   known-servers file, the way SSH trusts host keys.

pub mod certificate;
pub mod trust;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use sha2::{Digest, Sha256};

pub use certificate::{CertificateSource, ServerTls};

/// The one crypto provider, named explicitly so that no process-wide
/// default has to be installed first.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate's fingerprint as sockchat prints and pins it:
/// `sha256:` and the SHA-256 of its DER in lowercase hex. (`openssl x509
/// -fingerprint -sha256` prints the same digest in uppercase, with colons.)
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256:");
    for byte in digest {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// A fingerprint as typed (`sha256:AB:CD...`, any case, with or without
/// colons), in the form [`fingerprint`] gives; `None` if it is not one.
pub fn parse_fingerprint(text: &str) -> Option<String> {
    let text = text.trim();
    let hex = text
        .strip_prefix("sha256:")
        .or_else(|| text.strip_prefix("SHA256:"))
        .unwrap_or(text);
    let hex: String = hex
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
        .then(|| format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_the_sha256_of_the_der_in_lowercase_hex() {
        // SHA-256 of the empty string, a known value.
        assert_eq!(
            fingerprint(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn fingerprints_are_read_in_openssl_form_too() {
        let ours = fingerprint(b"x");
        let openssl = ours["sha256:".len()..]
            .to_ascii_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_fingerprint(&openssl).as_deref(), Some(ours.as_str()));
        assert_eq!(
            parse_fingerprint(&format!("SHA256:{openssl}")).as_deref(),
            Some(ours.as_str())
        );
        assert_eq!(parse_fingerprint(&ours).as_deref(), Some(ours.as_str()));
        assert_eq!(parse_fingerprint("sha256:abc"), None);
        assert_eq!(parse_fingerprint(&format!("{}zz", &ours[..69])), None);
    }
}
