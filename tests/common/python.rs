//! The Python the IRC tests drive: scripts/test.sh makes a venv in
//! target/pyenv with the irc library and the ircdocs parser vectors.

use std::path::PathBuf;

/// `SOCKCHAT_TEST_PYTHON` if set, else target/pyenv's python3.
pub fn path() -> PathBuf {
    match std::env::var_os("SOCKCHAT_TEST_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python3"),
    }
}
