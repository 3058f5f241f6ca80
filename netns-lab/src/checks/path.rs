//! Path expectations: for each hop of a flow, capture on the receiving node's underlay port
//! and check that the flow's packets arrive there with the expected encapsulation.
//!
//! The flow is one-way UDP datagrams with a 1000-byte payload, so every hop sees only the
//! forward direction and no probe, keepalive or handshake matches the size. For WireGuard
//! (opaque) a data message of at least that size addressed to the hop's node counts.

use std::time::{Duration, Instant};

use unbounded_scenario::{Encap, Flow, Members, PathExpectation};

use crate::capture::{Capture, Wire};
use crate::checks::Anchor;
use std::net::UdpSocket;

use crate::lab::Lab;
use crate::netns;
use crate::registry;
use crate::report::CheckResult;

const MARK_PAYLOAD: u32 = 1000;
const PINGS: u32 = 10;

/// What a capture on one node's port saw of the flow.
#[derive(Debug, Default)]
struct Seen {
    by_encap: std::collections::BTreeMap<&'static str, usize>,
}

fn flow_packets(lab: &Lab, flow: &Flow, wires: &[Wire], node_ip: std::net::Ipv4Addr) -> Seen {
    let (src, dst) = (lab.pods[&flow.from].ip, lab.pods[&flow.to].ip);
    let mut seen = Seen::default();
    for w in wires {
        let counts = match w {
            Wire::WireGuard {
                outer,
                msg_type: 4,
                len,
            } => outer.dst == node_ip && *len >= MARK_PAYLOAD as usize,
            Wire::WireGuard { .. } => false,
            other => other
                .visible_inner()
                .is_some_and(|a| a.src == src && a.dst == dst && a.proto == 17),
        };
        if counts {
            *seen.by_encap.entry(w.encap_name()).or_default() += 1;
        }
    }
    seen
}

fn encap_name(e: Encap) -> &'static str {
    match e {
        Encap::WireGuard => "WireGuard",
        Encap::Vxlan => "VXLAN",
        Encap::Geneve => "GENEVE",
        Encap::Ipip => "IPIP",
        Encap::None => "None",
    }
}

fn hop_members(m: &Members) -> Vec<String> {
    m.names().to_vec()
}

/// One attempt: captures on every hop member's port while the flow's pings run.
fn attempt(lab: &Lab, flow: &Flow, p: &PathExpectation) -> Result<Vec<String>, String> {
    let dir = registry::lab_dir(&lab.reg.lab());
    let mut caps = Vec::new();
    for (i, hop) in p.hops.iter().enumerate() {
        for m in hop_members(&hop.to) {
            let node = lab
                .topo
                .node(&m)
                .ok_or(format!("hop {i}: unknown node {m}"))?;
            let site = lab.topo.site(&node.site).expect("site");
            let path = dir.join(format!("path-{}-{i}-{m}.pcap", flow.name));
            let cap = Capture::start_directed(
                &lab.reg.netns_name(&site.netns),
                &node.bridge_port,
                &path,
                Some("out"),
            )
            .map_err(|e| e.to_string())?;
            caps.push((i, m, node.internal_ip, cap));
        }
    }
    let (src, dst) = (&lab.pods[&flow.from], &lab.pods[&flow.to]);
    let (dst_ip, port) = (dst.ip, flow.port);
    let sent = netns::run_in(&src.netns, move || -> std::io::Result<()> {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        for _ in 0..PINGS {
            sock.send_to(&[0x55u8; MARK_PAYLOAD as usize], (dst_ip, port))?;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    });
    let mut problems = Vec::new();
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("sending the flow's datagrams: {e}")),
        Err(e) => problems.push(e.to_string()),
    }
    let mut per_hop: Vec<Vec<(String, Seen)>> = p.hops.iter().map(|_| Vec::new()).collect();
    let mut captured = Vec::new();
    for (i, m, ip, cap) in caps {
        let wires = cap.finish().map_err(|e| e.to_string())?;
        captured.push(format!("{m}: {}", wires.len()));
        per_hop[i].push((m, flow_packets(lab, flow, &wires, ip)));
    }
    for (i, (hop, seen)) in p.hops.iter().zip(&per_hop).enumerate() {
        let want = encap_name(hop.encap);
        let got_right: usize = seen
            .iter()
            .map(|(_, s)| s.by_encap.get(want).copied().unwrap_or(0))
            .sum();
        let wrong: Vec<String> = seen
            .iter()
            .flat_map(|(m, s)| {
                s.by_encap
                    .iter()
                    .filter(|(e, _)| **e != want)
                    .map(move |(e, n)| format!("{n}×{e} at {m}"))
            })
            .collect();
        if got_right < (PINGS / 2) as usize {
            problems.push(format!(
                "hop {} → {:?}: {got_right} packets with {want}, expected ≥ {} (captured {}){}",
                i + 1,
                hop_members(&hop.to),
                PINGS / 2,
                captured.join(", "),
                if wrong.is_empty() {
                    String::new()
                } else {
                    format!(" (saw {})", wrong.join(", "))
                }
            ));
        } else if !wrong.is_empty() {
            problems.push(format!("hop {}: also saw {}", i + 1, wrong.join(", ")));
        }
    }
    Ok(problems)
}

/// Met when an attempt shows every hop as expected; that attempt must end by the anchor
/// plus `within`.
pub fn check(lab: &Lab, label: &str, p: &PathExpectation, anchor: &Anchor) -> CheckResult {
    let mut r = CheckResult::new(label, "path");
    let Some(flow) = lab.scenario.flows.iter().find(|f| f.name == p.flow) else {
        r.summary = format!("unknown flow {}", p.flow);
        return r;
    };
    if !lab.pods.contains_key(&flow.from) || !lab.pods.contains_key(&flow.to) {
        r.summary = "flow endpoints have no pods".into();
        return r;
    }
    let within = p.within.as_std();
    let deadline = anchor.at + within;
    let hops: Vec<String> = p
        .hops
        .iter()
        .map(|h| format!("{:?}/{}", hop_members(&h.to), encap_name(h.encap)))
        .collect();
    loop {
        match attempt(lab, flow, p) {
            Ok(problems) if problems.is_empty() => {
                let met = Instant::now();
                r.figure("met_ms", anchor.offset(met).as_millis() as u64);
                r.passed = met <= deadline;
                r.summary = format!(
                    "{} → {}: {}; met at {} (limit {:.1} s)",
                    flow.from,
                    flow.to,
                    hops.join(" → "),
                    anchor.show(met),
                    within.as_secs_f64()
                );
                return r;
            }
            Ok(problems) => r.details = problems,
            Err(e) => r.details = vec![e],
        }
        if Instant::now() > deadline {
            r.summary = format!(
                "{} → {}: expected {}; not met by {}",
                flow.from,
                flow.to,
                hops.join(" → "),
                anchor.show(deadline)
            );
            return r;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
