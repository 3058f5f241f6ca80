//! The Foundation corpus against the real API server: every `tests/data/invalid/*.yaml` is
//! rejected with the message its `# expect: <substring>` first line names, and every
//! `tests/data/valid/*.yaml` is accepted (server-side dry-run), with the CRDs from deploy/.

#[path = "support/apiserver.rs"]
mod apiserver;

use std::path::PathBuf;

use apiserver::{ControlPlane, repo_root};

fn corpus(dir: &str) -> Vec<PathBuf> {
    let dir = repo_root().join("tests/data").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn invalid_corpus_is_rejected_with_the_expected_messages() {
    let files = corpus("invalid");
    assert!(!files.is_empty(), "tests/data/invalid has no *.yaml files");
    let cp = ControlPlane::start().await;
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read corpus file");
        let Some(expect) = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .map(str::trim)
        else {
            failures.push(format!(
                "{}: first line is not `# expect: ...`",
                file.display()
            ));
            continue;
        };
        let out = cp.kubectl(&[
            "create",
            "--dry-run=server",
            "-f",
            file.to_str().expect("utf-8"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            failures.push(format!(
                "{}: accepted, expected rejection with {expect:?}",
                file.display()
            ));
        } else if !stderr.contains(expect) {
            failures.push(format!(
                "{}: rejected, but without {expect:?}:\n  {}",
                file.display(),
                stderr.trim()
            ));
        }
    }
    println!("{} invalid manifests checked", files.len());
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn valid_corpus_is_accepted() {
    let files = corpus("valid");
    assert!(!files.is_empty(), "tests/data/valid has no *.yaml files");
    let cp = ControlPlane::start().await;
    let mut failures = Vec::new();
    for file in &files {
        let out = cp.kubectl(&[
            "create",
            "--dry-run=server",
            "-f",
            file.to_str().expect("utf-8"),
        ]);
        if !out.status.success() {
            failures.push(format!(
                "{}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    println!("{} valid manifests checked", files.len());
    assert!(
        failures.is_empty(),
        "{} of {} rejected:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
