//! The lab with the production control plane, end to end (root): a node leaving a mesh in
//! embedded mode, and `expressroute.yaml` in kube mode (real kube-apiserver, controller and
//! node binaries). Each run must pass its checks and leave no namespace behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// One lab at a time: they share the machine's two cores and kube mode's address range.
static SERIAL: Mutex<()> = Mutex::new(());

fn report_skip(why: &str) {
    println!("SKIPPED {why}");
    if let Some(path) = std::env::var_os("UNBOUNDED_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "SKIPPED {why}");
        }
    }
}

fn lab_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_netns-lab"))
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn can_run(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        report_skip(&format!("{test}: the lab needs root (network namespaces)"));
        return false;
    }
    true
}

/// Runs a scenario and returns its JSON report; asserts the run passed and cleaned up.
fn run(test: &str, name: &str, scenario: &Path, extra: &[&str]) -> serde_json::Value {
    let json = std::env::temp_dir().join(format!("netns-lab-{test}-{}.json", std::process::id()));
    let out = Command::new(lab_bin())
        .arg("scenario")
        .arg(scenario)
        .args(["--name", name, "--json"])
        .arg(&json)
        .args(extra)
        .output()
        .expect("run netns-lab");
    let report = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let _ = std::fs::remove_file(&json);
    let leftovers = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list")
            .stdout,
    )
    .lines()
    .filter(|l| l.starts_with(&format!("nl-{name}-")))
    .count();
    assert_eq!(leftovers, 0, "{test}: namespaces of lab {name} left behind");
    assert!(
        out.status.success(),
        "{test}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    report.expect("the run wrote its JSON report")
}

fn result<'a>(report: &'a serde_json::Value, expectation: &str) -> &'a serde_json::Value {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["expectation"] == expectation)
        .unwrap_or_else(|| panic!("no result {expectation} in {report}"))
}

#[test]
fn a_node_leaves_and_the_others_stay_connected_embedded() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if !can_run("a_node_leaves_and_the_others_stay_connected_embedded") {
        return;
    }
    let report = run(
        "leave",
        "t-leave",
        &repo("netns-lab/tests/fixtures/node-leave.yaml"),
        &[],
    );
    assert_eq!(report["control_plane"], "embedded");
    assert_eq!(result(&report, "event leave")["passed"], true);
    let remaining = result(&report, "remaining");
    assert_eq!(remaining["passed"], true);
    // b-w2 is gone: 3 pods, 6 ordered pairs.
    assert!(
        remaining["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("6/6"),
        "{remaining}"
    );
}

#[test]
fn expressroute_passes_with_the_real_api_server() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let test = "expressroute_passes_with_the_real_api_server";
    if !can_run(test) {
        return;
    }
    let missing: Vec<PathBuf> = ["unbounded-net-controller", "unbounded-net-node"]
        .iter()
        .map(|b| lab_bin().with_file_name(b))
        .filter(|p| !p.is_file())
        .collect();
    if !missing.is_empty() {
        report_skip(&format!(
            "{test}: {missing:?} not built (cargo build -p unbounded-net --bins, same profile)"
        ));
        return;
    }
    let report = run(
        "kube",
        "t-kube",
        &repo("scenarios/expressroute.yaml"),
        &["--control-plane", "kube"],
    );
    assert_eq!(report["control_plane"], "kube");
    assert_eq!(result(&report, "full-mesh")["passed"], true);
}
