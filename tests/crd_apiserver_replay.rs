//! The manifest corpus replayed against a real kube-apiserver with the committed CRDs
//! installed: the server must accept the CRDs (structural schema, CEL cost within budget),
//! reject every invalid manifest with the expected text, and accept every valid one.
//! This is what keeps `api::validation` honest about what the server really says.
//!
//! Needs the control-plane binaries (`controlplane/build.sh`; `scripts/test.sh` builds them
//! before the tests); without them the test fails with that command.

#[path = "support/apiserver.rs"]
mod apiserver;

use std::fs;
use std::path::{Path, PathBuf};

use apiserver::{ControlPlane, binary_dir};

fn corpus(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// `kubectl create --dry-run=server`: full admission and validation, nothing stored.
fn dry_run_create(cp: &ControlPlane, path: &Path) -> (bool, String) {
    let out = cp.kubectl(&[
        "create",
        "--dry-run=server",
        "-f",
        path.to_str().expect("utf-8 path"),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn corpus_replays_against_a_real_apiserver() {
    let bin = binary_dir();
    if !bin.join("kube-apiserver").is_file() {
        panic!(
            "no kube-apiserver in {}; build it with controlplane/build.sh (scripts/test.sh does)",
            bin.display()
        );
    }
    let cp = ControlPlane::start().await;
    let mut failures = Vec::new();
    for path in corpus("invalid") {
        let text = fs::read_to_string(&path).expect("read manifest");
        let (ok, output) = dry_run_create(&cp, &path);
        if ok {
            failures.push(format!("{}: accepted by the API server", path.display()));
            continue;
        }
        for expect in text.lines().filter_map(|l| l.strip_prefix("# expect: ")) {
            if !output.contains(expect.trim()) {
                failures.push(format!(
                    "{}: server output lacks\n    {expect}\n  it said: {output}",
                    path.display()
                ));
            }
        }
    }
    for path in corpus("valid") {
        let (ok, output) = dry_run_create(&cp, &path);
        if !ok {
            failures.push(format!("{}: rejected: {output}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
