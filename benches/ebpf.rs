//! eBPF dataplane benchmark (run as root):
//! `cargo bench -p unbounded-net --bench ebpf` (both parts), or `-- maps` / `-- throughput`.
//!
//! maps: in a throwaway namespace, 10,000 remote prefixes (ECMP over two gateways) from
//! empty through the Reconciler (map values + anchor routes), the bare map load of the same
//! 10,000 values, a one-prefix change, a health flip of a gateway carrying every prefix (an
//! in-place value update each), and an agent restart (adopt, no map writes).
//!
//! throughput: single-stream TCP (iperf3, 5 s) between two namespaces over a routed veth
//! (baseline), over netlink+VXLAN (per-peer device) and over eBPF+VXLAN (TC program, shared
//! flow-based device), in the same run, as ratios.

#[path = "../tests/support/netns.rs"]
mod netns;
#[path = "../tests/support/netns_nodes.rs"]
mod netns_nodes;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netns::{Netns, veth};
use netns_nodes::{mesh_plan, route};
use unbounded_net::core::dataplane::{Encap, NodeDataplane};
use unbounded_net::node::Reconciler;
use unbounded_net::node::ebpf::{EbpfConfig, EbpfDataplane};
use unbounded_net::node::netlink::NetlinkDataplane;

/// A private BPF filesystem for the pins; unmounted on drop.
struct BpfFs(PathBuf);

impl BpfFs {
    fn new() -> BpfFs {
        let path = PathBuf::from(format!("/run/unet-bpf-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount bpffs");
        BpfFs(path)
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// aya and rtnetlink act in the calling thread's namespace: run the future on this thread,
/// switched into `ns` (the netlink connection task runs on the other worker).
fn in_ns<T>(ns: &Netns, f: impl std::future::Future<Output = T>) -> T {
    ns.enter(|| futures::executor::block_on(f))
}

fn ebpf(ns: &Netns, fs: &BpfFs) -> Reconciler<EbpfDataplane> {
    let cfg = EbpfConfig {
        pin_dir: fs.0.join(&ns.name),
        wireguard_device: "unwgbench".into(),
    };
    Reconciler::new(
        in_ns(ns, EbpfDataplane::connect(&cfg)).expect("load the eBPF dataplane"),
        "unwgbench",
    )
}

fn prefix(i: usize) -> IpNet {
    format!("10.{}.{}.0/24", 100 + i / 256, i % 256)
        .parse()
        .unwrap()
}

fn plan(n: usize) -> NodeDataplane {
    let mut p = mesh_plan(
        "bench",
        Encap::Vxlan,
        1450,
        &[
            ("gw1", "192.168.70.1", "192.168.70.2", "10.99.1.0/24"),
            ("gw2", "192.168.70.1", "192.168.70.3", "10.99.2.0/24"),
        ],
    );
    let ecmp = route(
        Encap::Vxlan,
        &[("gw1", "192.168.70.2"), ("gw2", "192.168.70.3")],
        1450,
    );
    for i in 0..n {
        p.routes.insert(prefix(i), ecmp.clone());
    }
    p
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn maps() {
    let fs = BpfFs::new();
    let ns = Netns::new("ebm");
    let peer = Netns::new("ebmp");
    veth(
        &ns,
        "eth0",
        "192.168.70.1/24",
        &peer,
        "eth0",
        "192.168.70.2/24",
    );
    let n = 10_000;
    let none = BTreeSet::new();
    let p = plan(n);
    let mut r = ebpf(&ns, &fs);

    let t = Instant::now();
    let full = in_ns(&ns, r.reconcile(&p, &none)).unwrap();
    let full_time = t.elapsed();
    assert!(
        full.apply.failures.is_empty(),
        "{:?}",
        full.apply.failures.first()
    );

    // The map alone: the same 10,000 values written again (each an in-place update).
    let entries = r.dataplane_mut().maps_mut().entries().unwrap();
    assert_eq!(entries.len(), n + 2);
    let t = Instant::now();
    for (prefix, e) in &entries {
        r.dataplane_mut().maps_mut().insert(*prefix, e).unwrap();
    }
    let load_time = t.elapsed();

    let mut changed = p.clone();
    changed
        .routes
        .get_mut(&prefix(n / 2))
        .unwrap()
        .nexthops
        .pop();
    let t = Instant::now();
    let one = in_ns(&ns, r.reconcile(&changed, &none)).unwrap();
    let one_time = t.elapsed();
    assert_eq!(one.ops.len(), 1);

    let down = BTreeSet::from(["gw1".to_string()]);
    let t = Instant::now();
    let flip = in_ns(&ns, r.reconcile(&changed, &down)).unwrap();
    let flip_time = t.elapsed();
    assert!(flip.apply.failures.is_empty());

    drop(r);
    let t = Instant::now();
    let mut restarted = ebpf(&ns, &fs);
    let adopt = in_ns(&ns, restarted.reconcile(&changed, &down)).unwrap();
    let adopt_time = t.elapsed();
    let written = adopt
        .ops
        .iter()
        .filter(|o| !matches!(o, unbounded_net::node::KernelOp::AddTunnel(_)))
        .count();
    let errors = in_ns(
        &ns,
        restarted.dataplane_mut().remove_all(&fs.0.join(&ns.name)),
    );
    assert!(errors.is_empty(), "{errors:?}");

    println!("eBPF dataplane, {n} remote prefixes (ECMP over two gateways):");
    println!(
        "  reconcile from empty: {} ({} ops: map value + anchor route each)",
        ms(full_time),
        full.ops.len()
    );
    println!(
        "  map load alone: {} for {} LPM values ({:.1} µs each)",
        ms(load_time),
        entries.len(),
        load_time.as_secs_f64() * 1e6 / entries.len() as f64
    );
    println!(
        "  reconcile from empty / map load alone: {:.2}x",
        full_time.as_secs_f64() / load_time.as_secs_f64()
    );
    println!(
        "  one-prefix change: {} ({} op)",
        ms(one_time),
        one.ops.len()
    );
    println!(
        "  gateway unhealthy (flag flipped in every value, no rebuild): {} ({} ops)",
        ms(flip_time),
        flip.ops.len()
    );
    println!(
        "  agent restart (load + attach + adopt): {}; {written} route/map writes",
        ms(adopt_time)
    );
}

/// Mbit/s of one 5 s iperf3 TCP stream from `client` to `server_ip` served in `server`.
fn iperf(client: &Netns, server: &Netns, server_ip: &str, bind: &str) -> f64 {
    let _srv = server.spawn("iperf3", &["-s", "-1", "-p", "5301", "-B", server_ip]);
    std::thread::sleep(Duration::from_millis(500));
    let out = client.sh(&format!(
        "iperf3 -c {server_ip} -B {bind} -p 5301 -t 5 -J | \
         python3 -c 'import json,sys; print(json.load(sys.stdin)[\"end\"][\"sum_received\"][\"bits_per_second\"])'"
    ));
    out.trim().parse::<f64>().unwrap() / 1e6
}

/// Two nodes joined by an underlay veth, pod addresses on loopback, VXLAN both ways.
fn two_nodes(tag: &str, subnet: u8) -> (Netns, Netns, NodeDataplane, NodeDataplane) {
    let a = Netns::new(&format!("{tag}a"));
    let b = Netns::new(&format!("{tag}b"));
    let (ua, ub) = (format!("192.168.{subnet}.1"), format!("192.168.{subnet}.2"));
    veth(
        &a,
        "eth0",
        &format!("{ua}/24"),
        &b,
        "eth0",
        &format!("{ub}/24"),
    );
    a.sh("ip addr add 10.244.1.1/32 dev lo");
    b.sh("ip addr add 10.244.2.1/32 dev lo");
    let pa = mesh_plan("a", Encap::Vxlan, 1450, &[("b", &ua, &ub, "10.244.2.0/24")]);
    let pb = mesh_plan("b", Encap::Vxlan, 1450, &[("a", &ub, &ua, "10.244.1.0/24")]);
    (a, b, pa, pb)
}

async fn throughput() {
    let none = BTreeSet::new();
    // Baseline: routed veth, addresses on the veth ends.
    let a = Netns::new("tpa");
    let b = Netns::new("tpb");
    veth(&a, "v0", "10.255.0.1/30", &b, "v0", "10.255.0.2/30");
    let base = iperf(&a, &b, "10.255.0.2", "10.255.0.1");

    let (na, nb, pa, pb) = two_nodes("tn", 81);
    for (ns, p) in [(&na, &pa), (&nb, &pb)] {
        let dp = ns.enter(|| NetlinkDataplane::connect().unwrap());
        let mut r = Reconciler::new(dp, "unwgbench");
        let rep = r.reconcile(p, &none).await.unwrap();
        assert!(rep.apply.failures.is_empty(), "{:?}", rep.apply.failures);
    }
    let netlink = iperf(&na, &nb, "10.244.2.1", "10.244.1.1");

    let fs = BpfFs::new();
    let (ea, eb, pa, pb) = two_nodes("te", 82);
    let mut keep = Vec::new();
    for (ns, p) in [(&ea, &pa), (&eb, &pb)] {
        let mut r = ebpf(ns, &fs);
        let rep = in_ns(ns, r.reconcile(p, &none)).unwrap();
        assert!(rep.apply.failures.is_empty(), "{:?}", rep.apply.failures);
        keep.push(r);
    }
    let ebpf_mbit = iperf(&ea, &eb, "10.244.2.1", "10.244.1.1");
    let counters = keep[0].dataplane().counters().unwrap();
    assert!(
        counters.redirects > 0,
        "traffic took the eBPF path: {counters:?}"
    );
    for (ns, mut r) in [&ea, &eb].into_iter().zip(keep) {
        let errors = in_ns(ns, r.dataplane_mut().remove_all(&fs.0.join(&ns.name)));
        assert!(errors.is_empty(), "{errors:?}");
    }

    println!(
        "single-stream TCP, iperf3 5 s, {} ({} cores):",
        Command::new("date")
            .args(["-u", "+%FT%TZ"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  {:<34} {:>9} {:>7}", "path", "Mbit/s", "ratio");
    for (name, v) in [
        ("plain routed veth (baseline)", base),
        ("netlink + VXLAN (per-peer device)", netlink),
        ("eBPF + VXLAN (TC, flow-based)", ebpf_mbit),
    ] {
        println!("  {name:<34} {v:>9.0} {:>7.2}", v / base);
    }
    println!("  eBPF / netlink: {:.2}", ebpf_mbit / netlink);
    println!("  eBPF counters on the client node: {counters:?}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED ebpf bench: needs root to create namespaces and load BPF programs");
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |part: &str| {
        !args.iter().any(|a| a == "maps" || a == "throughput") || args.iter().any(|a| a == part)
    };
    if want("maps") {
        maps();
    }
    if want("throughput") {
        throughput().await;
    }
}
