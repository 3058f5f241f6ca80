//! Output of runs: the terminal table, the JSON result file, the SVG timeline.

use std::fmt::Write;

use crate::expect::Verdict;
use crate::trace::fmt_time;
use crate::world::RunResult;

/// One line per run, for sweeps and CI logs.
pub fn result_line(r: &RunResult) -> String {
    format!(
        "{} {} seed={} faults={} converged={} reconverged={} writes={} relative={} not-judged={} trace={}{}",
        if r.passed { "PASS" } else { "FAIL" },
        r.scenario,
        r.seed,
        if r.random_faults {
            "random"
        } else {
            "timeline"
        },
        r.converged_at
            .map(fmt_time)
            .unwrap_or_else(|| "never".into()),
        r.reconverged_after_heal
            .map(fmt_time)
            .unwrap_or_else(|| "-".into()),
        r.api_writes,
        r.expectations
            .iter()
            .filter(|e| e.relative_to.is_some() && e.verdict == Verdict::Pass)
            .count(),
        r.expectations
            .iter()
            .filter(|e| e.verdict == Verdict::NotJudged)
            .count(),
        r.trace_hash,
        r.violation
            .as_ref()
            .map(|v| format!(" VIOLATION at {}: {}", fmt_time(v.at), v.message))
            .unwrap_or_default()
    )
}

/// The per-expectation table.
pub fn table(r: &RunResult) -> String {
    let mut out = String::new();
    let w = r
        .expectations
        .iter()
        .map(|e| e.label.len())
        .max()
        .unwrap_or(10)
        .max(11);
    let _ = writeln!(
        out,
        "{:<w$}  {:<14} {:<10} {:>10} {:>10}  detail",
        "expectation", "kind", "result", "measured", "deadline"
    );
    for e in &r.expectations {
        let verdict = match e.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Pending => "pending",
            Verdict::NotJudged => "not judged",
        };
        let _ = writeln!(
            out,
            "{:<w$}  {:<14} {:<10} {:>10} {:>10}  {}",
            e.label,
            e.kind,
            verdict,
            e.measured.map(fmt_time).unwrap_or_else(|| "-".into()),
            e.deadline.map(fmt_time).unwrap_or_else(|| "-".into()),
            e.detail
        );
    }
    if let Some(v) = &r.violation {
        let _ = writeln!(
            out,
            "\nINVARIANT VIOLATED at {} (seed {}): {}",
            fmt_time(v.at),
            v.seed,
            v.message
        );
        let _ = writeln!(
            out,
            "replay: cargo run -p sim -- scenario <file> --seed {}{}",
            v.seed,
            if r.random_faults {
                " --faults random"
            } else {
                ""
            }
        );
        let _ = writeln!(out, "last trace lines:");
        for l in &v.trace_tail {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

/// An SVG plot of delivered pod pairs (and planned nodes) over virtual time, with the timeline
/// events as vertical marks.
pub fn svg(r: &RunResult, events: &[(u64, String)]) -> String {
    let (w, h, m) = (900.0f64, 320.0f64, 50.0f64);
    let end = r.ended_at.as_millis().max(1) as f64;
    let x = |ms: u64| m + (ms as f64 / end) * (w - 2.0 * m);
    let y = |frac: f64| h - m - frac * (h - 2.0 * m);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{m}" y="20" font-size="13">{} seed {}: pod pairs delivered over virtual time</text>"#,
        r.scenario, r.seed
    );
    let _ = writeln!(
        s,
        r#"<line x1="{m}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        y(0.0),
        w - m,
        y(0.0)
    );
    let _ = writeln!(
        s,
        r#"<line x1="{m}" y1="{}" x2="{m}" y2="{}" stroke="black"/>"#,
        y(0.0),
        y(1.0)
    );
    for i in 0..=5 {
        let ms = (end as u64) * i / 5;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x(ms),
            y(0.0) + 15.0,
            fmt_time(std::time::Duration::from_millis(ms))
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">100%</text>"#,
        m - 4.0,
        y(1.0) + 4.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">0%</text>"#,
        m - 4.0,
        y(0.0) + 4.0
    );
    for (ms, label) in events {
        let _ = writeln!(
            s,
            r#"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="crimson" stroke-dasharray="4 3"/><text x="{0}" y="{3}" fill="crimson" transform="rotate(-30 {0} {3})">{4}</text>"#,
            x(*ms),
            y(0.0),
            y(1.0),
            y(1.0) - 4.0,
            escape(label)
        );
    }
    let mut pts = String::new();
    let mut planned = String::new();
    let max_nodes = r
        .samples
        .iter()
        .map(|p| p.planned_nodes)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    for p in &r.samples {
        let frac = if p.traced_pairs == 0 {
            0.0
        } else {
            p.delivered_pairs as f64 / p.traced_pairs as f64
        };
        let _ = write!(pts, "{:.1},{:.1} ", x(p.at_ms), y(frac));
        let _ = write!(
            planned,
            "{:.1},{:.1} ",
            x(p.at_ms),
            y(p.planned_nodes as f64 / max_nodes)
        );
    }
    let _ = writeln!(
        s,
        r#"<polyline points="{planned}" fill="none" stroke="gray" stroke-width="1"/>"#
    );
    let _ = writeln!(
        s,
        r#"<polyline points="{pts}" fill="none" stroke="steelblue" stroke-width="2"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" fill="steelblue">delivered pairs</text><text x="{}" y="{}" fill="gray">nodes with a plan</text>"#,
        w - m - 200.0,
        m,
        w - m - 90.0,
        m
    );
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
