//! Check scenario files without running them:
//! `cargo run -p unbounded-scenario --example check -- scenarios/*.yaml`.

use std::process::ExitCode;

use unbounded_scenario::Scenario;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: check SCENARIO.yaml...");
        return ExitCode::from(2);
    }
    let mut failed = 0;
    for file in &files {
        match Scenario::load(file) {
            Ok(s) => println!(
                "{file}: ok — {} sites, {} nodes, {} objects, {} events, {} expectations (kernel {:?})",
                s.topology.sites.len(),
                s.topology.nodes.len(),
                s.objects.len(),
                s.timeline.len(),
                s.expect.len(),
                s.kernel
            ),
            Err(err) => {
                failed += 1;
                eprintln!("{err}");
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{failed} of {} scenario files are invalid", files.len());
        ExitCode::FAILURE
    }
}
