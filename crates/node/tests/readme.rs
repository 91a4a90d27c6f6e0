//! The README's walk-throughs, run literally: each `<!-- walkthrough: NAME -->` block is
//! extracted from README.md and run by bash (`-e`, so the first failing command fails the
//! test) with the real binary on PATH against a fresh dev node.

mod common;

use common::start;
use std::{path::Path, process::Command};

/// The shell block that follows `<!-- walkthrough: name -->` in the README.
fn walkthrough(name: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let marker = format!("<!-- walkthrough: {name} -->");
    let after = &readme[readme
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in the README"))..];
    let body = &after[after
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6..];
    body[..body.find("```").expect("the block's end")].to_string()
}

#[test]
fn the_readme_walkthroughs_run_as_written() {
    let home = tempfile::tempdir().unwrap();
    let node = start(&home.path().join("chain"));
    let work = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_openledger"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut outputs = String::new();
    for name in ["datanets", "governance", "factory"] {
        let script = walkthrough(name);
        let output = Command::new("bash")
            .args(["-euxo", "pipefail", "-c", &script])
            .current_dir(work.path())
            .env("PATH", &path)
            .env("OPENLEDGER_HOME", home.path())
            .env("OPENLEDGER_RPC_URL", &node.rpc_url)
            .env("OPENLEDGER_API_URL", &node.api_url)
            .env_remove("OPENLEDGER_KEY")
            .output()
            .expect("run bash");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(
            output.status.success(),
            "the {name} walk-through stopped:\n{stderr}\n{stdout}"
        );
        outputs.push_str(&stdout);
    }
    // What the walk-throughs did, checked at the end.
    let corpus = std::fs::read_to_string(work.path().join("corpus.jsonl")).unwrap();
    assert_eq!(corpus.lines().count(), 2, "{corpus}");
    assert!(outputs.contains("state:       executed"), "{outputs}");
    assert!(outputs.contains("voting power 100 OPEN"), "{outputs}");
}
