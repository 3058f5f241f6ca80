//! Every scenario shipped in `scenarios/` parses and validates.

use std::path::PathBuf;

use unbounded_scenario::Scenario;

fn shipped() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/ is readable")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_scenario_parses() {
    let files = shipped();
    assert!(!files.is_empty(), "no scenarios/*.yaml found");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| Scenario::load(f).err().map(|e| e.to_string()))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
