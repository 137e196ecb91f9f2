//! Server operators (IRC's OPER): names and Argon2 password hashes from
//! the operator's configuration, checked off the hub's lock and off the
//! connection's thread, since a check costs tens of milliseconds by design.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

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
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|why| format!("no randomness for a salt: {why}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|why| why.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|why| why.to_string())
}

/// Whether `name` and `password` are an operator's. An unknown name costs
/// as much as a wrong password, so timing tells no names.
pub fn check(operators: &[Operator], name: &str, password: &str) -> bool {
    static UNKNOWN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let known = operators.iter().find(|operator| operator.name == name);
    let hash = match known {
        Some(operator) => operator.hash.as_str(),
        None => UNKNOWN.get_or_init(|| hash_password("no such operator").unwrap_or_default()),
    };
    let Ok(hash) = PasswordHash::new(hash) else {
        return false;
    };
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok();
    matches && known.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_checks_its_password_only_under_its_name() {
        let hash = hash_password("sesame").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let operator: Operator = format!("admin:{hash}").parse().unwrap();
        let operators = [operator];
        assert!(check(&operators, "admin", "sesame"));
        assert!(!check(&operators, "admin", "Sesame"));
        assert!(!check(&operators, "root", "sesame"));
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
