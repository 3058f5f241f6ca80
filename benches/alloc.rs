//! Pod CIDR allocation cost per node with 1,000 vs 50,000 nodes already allocated (the ratio
//! must stay ≤ 2: no scan of the pool per node), for contiguous and fragmented pools, plus the
//! cost of rebuilding the allocator from the nodes after a restart. Also: the whole controller
//! plan and its API writes when one node joins a 1,000-node / 10-site vs a 10,000-node /
//! 100-site cluster.
//!
//! Run: `cargo bench -p unbounded-net --bench alloc`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use unbounded_net::api::{NodeBlockSizes, PodCidrAssignment, SiteSpec};
use unbounded_net::core::synthetic::{ClusterShape, cluster};
use unbounded_net::core::{
    BlockPool, NodeFacts, PlanSettings, PodCidrAllocator, Snapshot, plan_controller,
};

/// New nodes allocated per timed run.
const BATCH: usize = 2_000;
const RUNS: usize = 15;

fn sites() -> BTreeMap<String, SiteSpec> {
    // Dual-stack: 10.0.0.0/8 in /26 blocks (262,144) and fd00::/44 in /64 blocks (1,048,576).
    let pca = PodCidrAssignment {
        cidr_blocks: vec!["10.0.0.0/8".into(), "fd00::/44".into()],
        node_block_sizes: Some(NodeBlockSizes {
            ipv4: Some(26),
            ipv6: Some(64),
        }),
        ..Default::default()
    };
    BTreeMap::from([(
        "s".to_string(),
        SiteSpec {
            node_cidrs: vec!["192.168.0.0/16".into()],
            pod_cidr_assignments: vec![pca],
            ..Default::default()
        },
    )])
}

/// A snapshot whose `held` nodes already hold blocks: contiguous (block i) or fragmented
/// (every other block, so the next free blocks are scattered gaps).
fn snapshot(held: usize, fragmented: bool) -> Snapshot {
    let v4 = BlockPool::new("10.0.0.0/8".parse().unwrap(), 26).unwrap();
    let v6 = BlockPool::new("fd00::/44".parse().unwrap(), 64).unwrap();
    let mut snap = Snapshot {
        sites: sites(),
        ..Default::default()
    };
    for i in 0..held {
        let index = if fragmented { 2 * i } else { i } as u128;
        let name = format!("old-{i:06}");
        let pod_cidrs: Vec<IpNet> = vec![v4.block(index), v6.block(index)];
        snap.nodes.insert(
            name.clone(),
            NodeFacts {
                name,
                pod_cidrs,
                ..Default::default()
            },
        );
    }
    snap
}

/// Median over runs of the time to allocate BATCH new nodes, per node.
fn per_node_allocation(base: &PodCidrAllocator) -> Duration {
    let names: Vec<String> = (0..BATCH).map(|i| format!("new-{i:06}")).collect();
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let mut alloc = base.clone();
            let t = Instant::now();
            for n in &names {
                black_box(alloc.allocate("s", n).expect("pool is large enough"));
            }
            t.elapsed()
        })
        .collect();
    times.sort();
    times[RUNS / 2] / BATCH as u32
}

fn rebuild_per_node(snap: &Snapshot) -> Duration {
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            black_box(PodCidrAllocator::from_snapshot(snap));
            t.elapsed()
        })
        .collect();
    times.sort();
    times[2] / snap.nodes.len().max(1) as u32
}

/// Plans a steady cluster plus one joining node; returns (plan time, writes, node count).
fn plan_join(sites: u32) -> (Duration, usize, usize) {
    let mut snap = cluster(ClusterShape {
        sites,
        nodes_per_site: 100,
        gateways_per_site: 2,
    });
    let steady = plan_controller(&snap, &BTreeMap::new(), PlanSettings::default());
    let slices = steady.slices.desired.clone();
    let joiner = NodeFacts {
        name: "joiner".into(),
        internal_ips: vec!["10.0.0.250".parse().unwrap()],
        ..Default::default()
    };
    snap.nodes.insert(joiner.name.clone(), joiner);
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            black_box(plan_controller(&snap, &slices, PlanSettings::default()));
            t.elapsed()
        })
        .collect();
    times.sort();
    let plan = plan_controller(&snap, &slices, PlanSettings::default());
    let writes = plan.site_labels.len()
        + plan.pod_cidrs.len()
        + plan.slices.upserts.len()
        + plan.slices.deletes.len();
    (times[2], writes, snap.nodes.len())
}

fn main() {
    println!(
        "pod CIDR allocation, dual-stack (IPv4 /26 + IPv6 /64 per node), {BATCH} new nodes per run, median of {RUNS}"
    );
    let mut worst = 0.0f64;
    for fragmented in [false, true] {
        let label = if fragmented {
            "fragmented"
        } else {
            "contiguous"
        };
        let small = snapshot(1_000, fragmented);
        let large = snapshot(50_000, fragmented);
        let a_small = PodCidrAllocator::from_snapshot(&small);
        let a_large = PodCidrAllocator::from_snapshot(&large);
        let t_small = per_node_allocation(&a_small);
        let t_large = per_node_allocation(&a_large);
        let ratio = t_large.as_secs_f64() / t_small.as_secs_f64();
        worst = worst.max(ratio);
        println!(
            "  {label:10}  1,000 held: {:>8.0} ns/node   50,000 held: {:>8.0} ns/node   ratio {ratio:.2}",
            t_small.as_nanos() as f64,
            t_large.as_nanos() as f64,
        );
        let r_small = rebuild_per_node(&small);
        let r_large = rebuild_per_node(&large);
        println!(
            "  {label:10}  rebuild from nodes: {:>6.0} ns/node at 1,000, {:>6.0} ns/node at 50,000 ({:.1} ms total)",
            r_small.as_nanos() as f64,
            r_large.as_nanos() as f64,
            (r_large * 50_000).as_secs_f64() * 1e3,
        );
    }
    println!(
        "controller plan when one node joins (median of 5; writes = labels + podCIDRs + slices)"
    );
    let mut base = None;
    for sites in [10u32, 100] {
        let (t, writes, nodes) = plan_join(sites);
        let ratio = base.map(|b: Duration| t.as_secs_f64() / b.as_secs_f64());
        base.get_or_insert(t);
        println!(
            "  {nodes:>6} nodes / {sites:>3} sites: plan {:>7.1} ms, {writes} writes{}",
            t.as_secs_f64() * 1e3,
            ratio
                .map(|r| format!(", time ratio vs 1,000 nodes {r:.1}"))
                .unwrap_or_default()
        );
    }
    let verdict = if worst <= 2.0 { "PASS" } else { "FAIL" };
    println!("worst 50,000 / 1,000 allocation ratio: {worst:.2} (goal <= 2): {verdict}");
}
