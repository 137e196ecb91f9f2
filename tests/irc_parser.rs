//! The IRC parser against the ircdocs parser vectors (`irc-parser-tests`
//! on PyPI, CC0; scripts/test.sh installs it in target/pyenv): every
//! message split into tags, source, verb and parameters as the vectors say.

mod common;

use std::collections::BTreeMap;

use serde_json::Value;
use sockchat::protocol::irc::parse;

/// The vectors of `name` (`msg-split`), as JSON, read by the package's
/// own loader.
fn vectors(name: &str) -> Value {
    let python = common::python::path();
    let script = format!(
        "import json, parser_tests.data as d; print(json.dumps(d.{}))",
        name.replace('-', "_")
    );
    let output = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap_or_else(|error| panic!("{}: {error}; run scripts/test.sh", python.display()));
    assert!(
        output.status.success(),
        "irc-parser-tests is missing: run scripts/test.sh ({})",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn every_message_splits_as_the_ircdocs_vectors_say() {
    let tests = vectors("msg-split");
    let tests = tests["tests"].as_array().unwrap();
    assert!(tests.len() >= 30, "the vectors are all there");
    for test in tests {
        let input = test["input"].as_str().unwrap();
        let atoms = &test["atoms"];
        let message = parse(input).unwrap_or_else(|| panic!("{input:?} has a verb"));
        assert_eq!(
            message.verb,
            atoms["verb"].as_str().unwrap(),
            "verb of {input:?}"
        );
        assert_eq!(
            message.source,
            atoms["source"].as_str(),
            "source of {input:?}"
        );
        let params: Vec<&str> = atoms["params"]
            .as_array()
            .map(|params| params.iter().map(|p| p.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(message.params, params, "params of {input:?}");
        let expected: BTreeMap<String, String> = atoms["tags"]
            .as_object()
            .map(|tags| {
                tags.iter()
                    .map(|(key, value)| (key.clone(), value.as_str().unwrap_or("").to_string()))
                    .collect()
            })
            .unwrap_or_default();
        // A key given twice: the last one counts.
        let tags: BTreeMap<String, String> = message
            .tags()
            .map(|(key, value)| (key.to_string(), value.into_owned()))
            .collect();
        assert_eq!(tags, expected, "tags of {input:?}");
    }
}
