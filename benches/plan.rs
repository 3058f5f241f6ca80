//! Planning benchmark: one worker's (and one gateway's) desired data plane in a 10,000-node,
//! 100-site cluster, and the diff after a single node joins, with the same figures for a
//! 1,000-node cluster measured in the same run as the baseline.
//!
//! Run: `cargo bench -p unbounded-net --bench plan`

use std::hint::black_box;
use std::time::{Duration, Instant};

use unbounded_net::core::synthetic::{ClusterShape, cluster, node};
use unbounded_net::core::{PlanIndex, PlanSettings, Snapshot, diff, plan_node};

/// Median wall time of `f` over `runs` runs (after one warm-up).
fn median<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    black_box(f());
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

struct Figures {
    nodes: usize,
    index: Duration,
    worker: Duration,
    gateway: Duration,
    diff: Duration,
    replan: Duration,
    ops: usize,
    routes: usize,
}

fn joined(mut snap: Snapshot) -> Snapshot {
    let n = node("joiner", "site-0", "10.0.0.250", None, "100.64.127.0/24");
    snap.nodes.insert(n.name.clone(), n);
    snap
}

fn measure(sites: u32) -> Figures {
    let shape = ClusterShape {
        sites,
        nodes_per_site: 100,
        gateways_per_site: 2,
    };
    let before = cluster(shape);
    let after = joined(before.clone());
    let settings = PlanSettings::default();
    let worker = "site-0-node-50";
    let gateway = "site-0-node-0";

    let index = PlanIndex::new(&before, settings);
    let index_time = median(5, || PlanIndex::new(&before, settings));
    let worker_time = median(21, || plan_node(&index, worker).map(|p| p.dataplane));
    let gateway_time = median(21, || plan_node(&index, gateway).map(|p| p.dataplane));
    let old = plan_node(&index, worker).expect("worker exists").dataplane;
    let index_after = PlanIndex::new(&after, settings);
    let new = plan_node(&index_after, worker)
        .expect("worker exists")
        .dataplane;
    let ops = diff(&old, &new);
    let diff_time = median(21, || diff(&old, &new));
    let replan = median(5, || {
        let idx = PlanIndex::new(&after, settings);
        let plan = plan_node(&idx, worker).map(|p| p.dataplane);
        plan.map(|p| diff(&old, &p).len())
    });
    Figures {
        nodes: before.nodes.len(),
        index: index_time,
        worker: worker_time,
        gateway: gateway_time,
        diff: diff_time,
        replan,
        ops: ops.len(),
        routes: old.routes.len(),
    }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-12)
}

fn main() {
    let base = measure(10);
    let big = measure(100);
    println!(
        "{:<34} {:>14} {:>14} {:>8}",
        "figure", "1,000 nodes", "10,000 nodes", "ratio"
    );
    let rows = [
        ("index build (once per snapshot)", base.index, big.index),
        ("plan one worker", base.worker, big.worker),
        ("plan one gateway", base.gateway, big.gateway),
        ("diff after one node joins", base.diff, big.diff),
        ("cold: new index + plan + diff", base.replan, big.replan),
    ];
    for (name, a, b) in rows {
        println!("{name:<34} {:>14?} {:>14?} {:>8.2}", a, b, ratio(b, a));
    }
    println!(
        "{:<34} {:>14} {:>14}",
        "worker routes", base.routes, big.routes
    );
    println!(
        "{:<34} {:>14} {:>14}",
        "diff ops for one joining node", base.ops, big.ops
    );
    println!("(nodes: {} vs {})", base.nodes, big.nodes);
}
