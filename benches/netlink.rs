//! Netlink dataplane benchmark (run as root):
//! `cargo bench -p unbounded-net --bench netlink`
//!
//! In a throwaway namespace: program N remote prefixes from empty through the reconciler,
//! then apply a one-prefix change, then an agent restart (adopt, no change). Reports time and
//! netlink requests, against a baseline measured in the same run: `ip -batch` adding the same
//! routes (iproute2's fastest path). The one-prefix change is measured at two sizes to show it
//! does not grow with the table.

#[path = "../tests/support/netns.rs"]
mod netns;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netns::{Netns, veth};
use unbounded_net::core::dataplane::{Encap, NextHop, NodeDataplane, Route, TunnelPeer};
use unbounded_net::node::kernel::diff;
use unbounded_net::node::netlink::NetlinkDataplane;
use unbounded_net::node::render::render;
use unbounded_net::node::{Dataplane, Reconciler};

fn prefix(i: usize) -> IpNet {
    format!("10.{}.{}.0/24", 100 + i / 256, i % 256)
        .parse()
        .unwrap()
}

fn plan(n: usize) -> NodeDataplane {
    let mut p = NodeDataplane {
        node: "bench".into(),
        ..Default::default()
    };
    let gws = [("gw1", "192.168.70.2"), ("gw2", "192.168.70.3")];
    for (g, ip) in gws {
        p.tunnels.insert(
            g.into(),
            TunnelPeer {
                encap: Encap::Vxlan,
                local: "192.168.70.1".parse().unwrap(),
                remote: ip.parse().unwrap(),
                vni: Some(1),
                mtu: 1450,
            },
        );
    }
    for i in 0..n {
        let (g, ip) = gws[i % 2];
        p.routes.insert(
            prefix(i),
            Route {
                nexthops: vec![NextHop {
                    peer: g.into(),
                    encap: Encap::Vxlan,
                    underlay: ip.parse().unwrap(),
                    vni: Some(1),
                }],
                mtu: 1450,
                pin: None,
            },
        );
    }
    p
}

struct Run {
    /// Pure part of a one-prefix pass: render the plan and diff it against the known state.
    render_diff: Duration,
    full: Duration,
    full_msgs: usize,
    one: Duration,
    one_msgs: usize,
    adopt: Duration,
    adopt_ops: usize,
}

async fn measure(ns: &Netns, n: usize) -> Run {
    let none = BTreeSet::new();
    let dp = ns.enter(|| NetlinkDataplane::connect().unwrap());
    let mut r = Reconciler::new(dp, "unwgbench");
    let p = plan(n);
    let t = Instant::now();
    let full = r.reconcile(&p, &none).await.unwrap();
    let full_time = t.elapsed();
    assert!(
        full.apply.failures.is_empty(),
        "{:?}",
        &full.apply.failures[..1]
    );

    let mut changed = p.clone();
    let route = changed.routes.get_mut(&prefix(n / 2)).unwrap();
    route.nexthops[0].peer = if route.nexthops[0].peer == "gw1" {
        "gw2"
    } else {
        "gw1"
    }
    .into();
    let t = Instant::now();
    let (before, _) = render(&p, "unwgbench", &none);
    let (after, _) = render(&changed, "unwgbench", &none);
    let ops = diff(&before, &after);
    let render_diff = t.elapsed() / 2;
    assert_eq!(ops.len(), 1);
    let t = Instant::now();
    let one = r.reconcile(&changed, &none).await.unwrap();
    let one_time = t.elapsed();

    let dp = ns.enter(|| NetlinkDataplane::connect().unwrap());
    let mut restarted = Reconciler::new(dp, "unwgbench");
    let t = Instant::now();
    let adopt = restarted.reconcile(&changed, &none).await.unwrap();
    let adopt_time = t.elapsed();
    let mut dp = restarted.dataplane().clone();
    dp.remove_all().await.unwrap();
    assert!(dp.read().await.unwrap().routes.is_empty());
    Run {
        render_diff,
        full: full_time,
        full_msgs: full.apply.messages,
        one: one_time,
        one_msgs: one.apply.messages,
        adopt: adopt_time,
        adopt_ops: adopt.ops.len(),
    }
}

/// Baseline: the same routes through `ip -batch` (one netlink request per route too).
fn ip_batch(ns: &Netns, n: usize) -> Duration {
    ns.sh("ip link add bvx1 type vxlan id 9001 remote 192.168.70.2 local 192.168.70.1 dstport 4789 && ip link set bvx1 up && ip link add bvx2 type vxlan id 9002 remote 192.168.70.3 local 192.168.70.1 dstport 4789 && ip link set bvx2 up");
    let mut batch = String::new();
    for i in 0..n {
        batch.push_str(&format!(
            "route add {} via 169.254.85.1 dev bvx{} onlink proto 85 mtu 1450\n",
            prefix(i),
            1 + i % 2
        ));
    }
    let t = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "ip", "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(batch.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let took = t.elapsed();
    ns.sh("ip link del bvx1; ip link del bvx2");
    took
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED netlink bench: needs root to create a network namespace");
        return;
    }
    let ns = Netns::new("bench");
    let peer = Netns::new("benchp");
    veth(
        &ns,
        "eth0",
        "192.168.70.1/24",
        &peer,
        "eth0",
        "192.168.70.2/24",
    );
    ns.sh("ip addr add 192.168.70.3/32 dev lo");

    let base = ip_batch(&ns, 10_000);
    let small = measure(&ns, 1_000).await;
    let big = measure(&ns, 10_000).await;
    println!("netlink dataplane, 10,000 remote prefixes from empty:");
    println!(
        "  reconcile: {} in {} netlink requests; `ip -batch` baseline: {} (ratio {:.2})",
        ms(big.full),
        big.full_msgs,
        ms(base),
        big.full.as_secs_f64() / base.as_secs_f64()
    );
    println!(
        "  one-prefix change: {} in {} requests at 10,000 prefixes; {} in {} requests at 1,000 (ratio {:.2})",
        ms(big.one),
        big.one_msgs,
        ms(small.one),
        small.one_msgs,
        big.one.as_secs_f64() / small.one.as_secs_f64()
    );
    println!(
        "  of which pure render + diff of the whole plan: {} at 10,000, {} at 1,000",
        ms(big.render_diff),
        ms(small.render_diff)
    );
    println!(
        "  restart (read back + diff, {} ops): {} at 10,000 prefixes",
        big.adopt_ops,
        ms(big.adopt)
    );
    assert_eq!(big.one_msgs, 1, "a one-prefix change must be one request");
    assert_eq!(big.adopt_ops, 0, "a restart must change nothing");
}
