//! Checks of what crosses the wire: no plaintext pod traffic on public links, and the path
//! MTU of a flow (DF pings at exactly the MTU pass, one byte more gets "frag needed").

use std::time::{Duration, Instant};

use ipnet::IpNet;
use unbounded_scenario::{NoPlaintext, PathMtu};

use crate::capture::{Capture, Wire};
use crate::checks::ping::{PingOpts, ping};
use crate::lab::Lab;
use crate::registry;
use crate::report::CheckResult;

pub fn no_plaintext(lab: &Lab, label: &str, e: &NoPlaintext) -> CheckResult {
    let mut r = CheckResult::new(label, "noPlaintext");
    let Some(inet) = &lab.topo.internet else {
        r.summary = "the scenario has no internet link".into();
        return r;
    };
    let names = e.links.names();
    let links: Vec<_> = lab
        .scenario
        .topology
        .links
        .iter()
        .filter(|l| l.is_public() && (names.is_empty() || names.contains(&l.name)))
        .collect();
    let pools: Vec<IpNet> = lab
        .topo
        .sites
        .iter()
        .flat_map(|s| s.pod_pools.clone())
        .collect();
    let in_pools =
        |ip: std::net::Ipv4Addr| pools.iter().any(|p| p.contains(&std::net::IpAddr::V4(ip)));
    let dir = registry::lab_dir(&lab.reg.lab());
    let mut caps = Vec::new();
    for site in lab.topo.sites.iter().filter(|s| s.wan_ip.is_some()) {
        if !links.iter().any(|l| l.joins(&site.name)) {
            continue;
        }
        let port = lab.topo.internet_port(&site.name);
        let path = dir.join(format!("noplain-{port}.pcap"));
        match Capture::start(&lab.reg.netns_name(&inet.netns), &port, &path) {
            Ok(c) => caps.push((site.name.clone(), c)),
            Err(err) => {
                r.summary = err.to_string();
                return r;
            }
        }
    }
    // Traffic: every cross-site pod pair, a few marked pings each.
    let nodes: Vec<String> = lab.pods.keys().cloned().collect();
    let mut pairs = 0;
    for f in &nodes {
        for t in &nodes {
            let (sf, st) = (
                &lab.topo.node(f).expect("n").site,
                &lab.topo.node(t).expect("n").site,
            );
            if sf == st {
                continue;
            }
            pairs += 1;
            let _ = ping(
                &lab.pods[f].netns,
                lab.pods[t].ip,
                3,
                2,
                PingOpts {
                    payload: Some(600),
                    interval: Some(0.05),
                    ..Default::default()
                },
            );
        }
    }
    let (mut total, mut wg, mut leaks) = (0usize, 0usize, Vec::new());
    for (site, cap) in caps {
        match cap.finish() {
            Ok(wires) => {
                for w in wires {
                    total += 1;
                    if matches!(w, Wire::WireGuard { .. }) {
                        wg += 1;
                    }
                    if let Some(a) = w.visible_inner()
                        && (in_pools(a.src) || in_pools(a.dst))
                        && leaks.len() < 20
                    {
                        leaks.push(format!(
                            "uplink of {site}: {} {} → {}",
                            w.encap_name(),
                            a.src,
                            a.dst
                        ));
                    }
                }
            }
            Err(e) => leaks.push(e.to_string()),
        }
    }
    r.figure("packets", total);
    r.figure("wireguard_packets", wg);
    r.details = leaks;
    // Non-vacuous: pod traffic must actually have crossed the internet while we watched.
    r.passed = r.details.is_empty() && wg > 0;
    r.summary = format!(
        "{total} packets on {} internet uplinks during {pairs} cross-site pod pings: {wg} WireGuard, {} with pod addresses in the clear",
        links.len().max(1),
        r.details.len()
    );
    if wg == 0 && r.details.is_empty() {
        r.summary
            .push_str(" (no encrypted traffic seen: nothing was tested)");
    }
    r
}

pub fn path_mtu(lab: &Lab, label: &str, e: &PathMtu) -> CheckResult {
    let mut r = CheckResult::new(label, "pathMtu");
    let Some(flow) = lab.scenario.flows.iter().find(|f| f.name == e.flow) else {
        r.summary = format!("unknown flow {}", e.flow);
        return r;
    };
    let (Some(src), Some(dst)) = (lab.pods.get(&flow.from), lab.pods.get(&flow.to)) else {
        r.summary = "flow endpoints have no pods".into();
        return r;
    };
    // ICMP echo: 20 bytes IPv4 + 8 bytes ICMP around the payload.
    let at = e.mtu - 28;
    let deadline = Instant::now() + e.within.as_std();
    loop {
        let df = |payload| PingOpts {
            payload: Some(payload),
            dont_fragment: true,
            interval: Some(0.2),
        };
        let fits = ping(&src.netns, dst.ip, 3, 3, df(at));
        let over = ping(&src.netns, dst.ip, 2, 3, df(at + 1));
        r.passed = fits.received > 0 && !fits.frag_needed && over.received == 0 && over.frag_needed;
        r.summary = format!(
            "DF {} bytes: {}/{} replies; {} bytes: {}",
            e.mtu,
            fits.received,
            fits.transmitted,
            e.mtu + 1,
            if over.frag_needed {
                "fragmentation needed".to_string()
            } else {
                format!("{} replies, no frag-needed", over.received)
            }
        );
        if r.passed || Instant::now() > deadline {
            if !r.passed {
                r.details = vec![
                    fits.raw.lines().last().unwrap_or_default().to_string(),
                    over.raw
                        .lines()
                        .find(|l| l.contains("ag needed") || l.contains("too long"))
                        .unwrap_or_default()
                        .to_string(),
                ];
            }
            return r;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
