//! `sim`: runs scenarios in the deterministic simulator.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sim::expect::Verdict;
use sim::generate::{Shape, generate};
use sim::world::{RunConfig, RunResult, run};
use sim::{report, trace::fmt_time};
use unbounded_scenario::Scenario;

#[derive(Parser)]
#[command(about = "Deterministic simulator of unbounded-net (turmoil, virtual time)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario file.
    Scenario {
        /// The scenario file (not with --generate).
        #[arg(required_unless_present = "generate")]
        file: Option<PathBuf>,
        /// Generate a large scenario instead, e.g. `nodes=5000,sites=50`.
        #[arg(long, conflicts_with = "file")]
        generate: Option<String>,
        /// One seed.
        #[arg(long, conflicts_with = "seeds")]
        seed: Option<u64>,
        /// A seed range `A..B` (B exclusive) for a sweep.
        #[arg(long)]
        seeds: Option<String>,
        /// `random`: add random faults drawn from each seed on top of the timeline.
        #[arg(long)]
        faults: Option<String>,
        /// Write the result(s) as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write an SVG timeline of the (first) run.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Write the event trace of the (first) run.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Print a progress line every 10 s of virtual time.
        #[arg(long)]
        progress: bool,
        /// turmoil tick in milliseconds.
        #[arg(long, default_value_t = 5)]
        tick_ms: u64,
    },
}

fn parse_seeds(s: &str) -> Result<std::ops::Range<u64>> {
    let (a, b) = s
        .split_once("..")
        .context("--seeds takes A..B, e.g. 1..200")?;
    let a: u64 = a.trim().parse().context("--seeds: A is not a number")?;
    let b: u64 = b.trim().parse().context("--seeds: B is not a number")?;
    if b <= a {
        bail!("--seeds {s}: the range is empty");
    }
    Ok(a..b)
}

/// Peak resident set size of this process (Linux `VmHWM`), for the benchmark report.
fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.trim_start_matches("VmHWM:").trim().to_string())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let Command::Scenario {
        file,
        generate: shape_arg,
        seed,
        seeds,
        faults,
        json,
        svg,
        trace,
        tick_ms,
        progress,
    } = cli.command;
    let random_faults = match faults.as_deref() {
        None => false,
        Some("random") => true,
        Some(other) => bail!("--faults {other}: the only fault generator is `random`"),
    };
    let (scenario, agents) = match (&file, &shape_arg) {
        (Some(file), None) => (
            Scenario::load(file).map_err(|e| anyhow::anyhow!("{e}"))?,
            None,
        ),
        (None, Some(shape)) => {
            let shape: Shape = shape.parse()?;
            let started = Instant::now();
            let g = generate(shape, seed.unwrap_or(1));
            let s = Scenario::parse(
                &format!("generated-{}n-{}s", shape.nodes, shape.sites),
                &g.yaml,
            )
            .map_err(|e| anyhow::anyhow!("generated scenario is invalid: {e}"))?;
            println!(
                "generated {} nodes in {} sites ({} agent hosts) in {:.2?}",
                shape.nodes,
                shape.sites,
                g.agents.len(),
                started.elapsed()
            );
            (s, Some(g.agents))
        }
        _ => bail!("give either a scenario file or --generate"),
    };
    let range = match (&seeds, seed) {
        (Some(s), _) => parse_seeds(s)?,
        (None, Some(s)) => s..s + 1,
        (None, None) => 1..2,
    };
    let sweep = range.end - range.start > 1;
    let mut results: Vec<RunResult> = Vec::new();
    let mut walls = Vec::new();
    for seed in range {
        let cfg = RunConfig {
            seed,
            random_faults,
            tick: Duration::from_millis(tick_ms.max(1)),
            agents: agents.clone(),
            progress,
            ..Default::default()
        };
        let started = Instant::now();
        let r = run(&scenario, cfg);
        walls.push(started.elapsed());
        println!("{}", report::result_line(&r));
        if !sweep {
            print!("{}", report::table(&r));
            println!(
                "wall time {:.2?}, virtual time {}, {} trace lines, peak RSS {}",
                walls[0],
                fmt_time(r.ended_at),
                r.trace_lines,
                peak_rss().unwrap_or_else(|| "unknown".into())
            );
            println!(
                "every Node allocated at {}; all traced pairs delivered at {}",
                r.all_allocated_at.map_or("never".into(), fmt_time),
                r.converged_at.map_or("never".into(), fmt_time)
            );
            let in_api = scenario.topology.nodes.len();
            println!(
                "API writes: {} total, {:.2} per node ({in_api} nodes); by kind {:?}",
                r.api_writes,
                r.api_writes as f64 / in_api.max(1) as f64,
                r.api_writes_by_kind
            );
        } else if !r.passed {
            print!("{}", report::table(&r));
        }
        results.push(r);
    }
    if sweep {
        let failed: Vec<u64> = results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| r.seed)
            .collect();
        let slowest = results
            .iter()
            .filter_map(|r| r.reconverged_after_heal.map(|t| (t, r.seed)))
            .max();
        let judged = |f: &dyn Fn(&sim::expect::ExpectationResult) -> bool| -> usize {
            results
                .iter()
                .map(|r| r.expectations.iter().filter(|e| f(e)).count())
                .sum()
        };
        let total = judged(&|_| true);
        let relative = judged(&|e| e.relative_to.is_some() && e.verdict == Verdict::Pass);
        let not_judged = judged(&|e| e.verdict == Verdict::NotJudged);
        println!(
            "sweep: {} runs, {} passed, {} failed {:?}; expectations: {total} judged, \
             {relative} of them passed relative to a random fault, {not_judged} not judged \
             (overlapped by a random fault); slowest re-convergence after heal: {}",
            results.len(),
            results.len() - failed.len(),
            failed.len(),
            failed,
            slowest
                .map(|(t, s)| format!("{} (seed {s})", fmt_time(t)))
                .unwrap_or_else(|| "-".into())
        );
    }
    if let Some(path) = json {
        let body = if sweep {
            serde_json::to_string_pretty(&results)?
        } else {
            serde_json::to_string_pretty(&results[0])?
        };
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = svg {
        let events: Vec<(u64, String)> = sim::faults::timeline(&scenario)
            .iter()
            .map(|s| (s.at.as_millis() as u64, s.label.clone()))
            .collect();
        std::fs::write(&path, report::svg(&results[0], &events))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = trace {
        std::fs::write(&path, results[0].trace.text())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if results.iter().any(|r| !r.passed) {
        std::process::exit(1);
    }
    Ok(())
}
