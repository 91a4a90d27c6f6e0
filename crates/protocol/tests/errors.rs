//! Every custom error a contract declares is named by that contract's tests, which check the
//! exact error a refused call comes back with: an error no test names is a refusal nobody has
//! seen happen.

use std::path::Path;

/// Each contract with its test files (a directory stands for every file in it).
const CONTRACTS: [(&str, &[&str]); 5] = [
    ("DatanetRegistry", &["datanets"]),
    ("InferenceSettlement", &["settlement"]),
    ("ModelFactory", &["model_factory.rs"]),
    ("ModelRegistry", &["models.rs"]),
    ("Staking", &["staking.rs", "datanets"]),
];

fn read_tests(tests: &Path, entries: &[&str]) -> String {
    let mut text = String::new();
    for entry in entries {
        let path = tests.join(entry);
        if path.is_dir() {
            for file in std::fs::read_dir(&path).unwrap() {
                text.push_str(&std::fs::read_to_string(file.unwrap().path()).unwrap());
            }
        } else {
            text.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    text
}

#[test]
fn every_custom_error_is_named_by_its_contracts_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tests = root.join("tests");
    let mut missing = Vec::new();
    let mut all = CONTRACTS.to_vec();
    all.push(("ProtocolParams", &["protocol_params.rs"]));
    for (contract, entries) in all {
        let source =
            std::fs::read_to_string(root.join(format!("../../contracts/src/{contract}.sol")))
                .unwrap();
        let text = read_tests(&tests, entries);
        for line in source.lines() {
            let Some(rest) = line.trim().strip_prefix("error ") else {
                continue;
            };
            let name = rest.split('(').next().unwrap();
            let named = text.match_indices(name).any(|(i, _)| {
                let before = text[..i].chars().last().unwrap_or(' ');
                let after = text[i + name.len()..].chars().next().unwrap_or(' ');
                !before.is_alphanumeric() && !after.is_alphanumeric()
            });
            if !named {
                missing.push(format!("{contract}.{name}"));
            }
        }
    }
    assert!(missing.is_empty(), "errors no test names: {missing:?}");
}
