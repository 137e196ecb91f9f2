//! Server operators (IRC's OPER): names and Argon2 password hashes from
//! the operator's configuration, checked off the hub's lock and off the
//! connection's thread, since a check costs tens of milliseconds by design.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// How long an address waits after a wrong operator password, in ms.
pub const DEFAULT_OPER_RETRY_MS: u64 = 2_000;

/// One server operator: a name and the PHC string of its password's
/// Argon2 hash (`$argon2id$v=19$...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub hash: String,
}

impl std::str::FromStr for Operator {
    type Err = String;

    /// `NAME:HASH`, as `--operator` and the config file give it.
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (name, hash) = spec
            .split_once(':')
            .ok_or("an operator is NAME:HASH (the hash from `sockchat hash-password`)")?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("bad operator name {name:?}: one word"));
        }
        PasswordHash::new(hash).map_err(|why| {
            format!("operator {name}: not a password hash ({why}); make one with `sockchat hash-password`")
        })?;
        Ok(Operator {
            name: name.to_string(),
            hash: hash.to_string(),
        })
    }
}

/// The Argon2id hash of `password`, as a PHC string, with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    hash_with(&Argon2::default(), password)
}

fn hash_with(hasher: &Argon2, password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|why| format!("no randomness for a salt: {why}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|why| why.to_string())?;
    hasher
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|why| why.to_string())
}

/// The server's operators, with a stand-in hash for names that are not
/// theirs: it has the first operator's Argon2 parameters, so checking an
/// unknown name costs as much as a wrong password and timing tells no names.
#[derive(Debug, Clone, Default)]
pub struct Operators {
    known: Vec<Operator>,
    unknown: String,
}

impl Operators {
    /// The set of `known`, with its stand-in hash made now (at start, not
    /// on the first wrong guess).
    pub fn new(known: Vec<Operator>) -> Result<Self, String> {
        let Some(first) = known.first() else {
            return Ok(Operators::default());
        };
        let hash = PasswordHash::new(&first.hash).map_err(|why| why.to_string())?;
        let params = argon2::Params::try_from(&hash).map_err(|why| why.to_string())?;
        let hasher = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let unknown = hash_with(&hasher, "no such operator")?;
        Ok(Operators { known, unknown })
    }

    /// Whether the server has any operator at all.
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// The operators, in the order configured.
    pub fn iter(&self) -> impl Iterator<Item = &Operator> {
        self.known.iter()
    }

    /// Whether `name` and `password` are an operator's.
    pub fn check(&self, name: &str, password: &str) -> bool {
        let known = self.known.iter().find(|operator| operator.name == name);
        let hash = known.map_or(self.unknown.as_str(), |operator| operator.hash.as_str());
        let Ok(hash) = PasswordHash::new(hash) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        matches && known.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_checks_its_password_only_under_its_name() {
        let hash = hash_password("sesame").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let operator: Operator = format!("admin:{hash}").parse().unwrap();
        let operators = Operators::new(vec![operator]).unwrap();
        assert!(operators.check("admin", "sesame"));
        assert!(!operators.check("admin", "Sesame"));
        assert!(!operators.check("root", "sesame"));
        assert!(!Operators::default().check("admin", "sesame"));
        // The stand-in for unknown names costs what a real hash costs.
        let params = |hash: &str| argon2::Params::try_from(&PasswordHash::new(hash).unwrap());
        assert_eq!(params(&operators.unknown), params(&hash));
        // Two hashes of one password differ: each has its own salt.
        assert_ne!(hash_password("sesame").unwrap(), hash);
    }

    #[test]
    fn specs_without_a_name_or_a_hash_are_refused() {
        assert!("admin".parse::<Operator>().is_err());
        assert!("admin:sesame".parse::<Operator>().is_err());
        assert!(":$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"
            .parse::<Operator>()
            .is_err());
    }
}
