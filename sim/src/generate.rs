//! Generated large scenarios (`--generate nodes=5000,sites=50`) for the scale benchmark.
//!
//! Sites `s00…`, each with 2–4 External gateways (drawn from the seed), one GatewayPool and
//! SiteGatewayPoolAssignment per site, every pool peered with every other over the internet.
//! Agents run on every gateway and on the first worker of the two sites the probe flow joins;
//! the other workers are Nodes only (their kubelet registers them and their key is published
//! with the Node), so the control plane carries the full node count. Agent hosts are kept few
//! because turmoil's cost per step grows with the cube of its hosts (a link per host pair,
//! and every host's delivery scans every link).

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::rng::SimRng;

/// Shape of a generated cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub nodes: usize,
    pub sites: usize,
}

/// Why a `--generate` argument was refused.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error("--generate: {0:?} is not key=value (write nodes=5000,sites=50)")]
    NotKeyValue(String),
    #[error("--generate: unknown key {0:?} (use nodes and sites)")]
    UnknownKey(String),
    #[error("--generate: {0:?} is not a number")]
    NotANumber(String),
    #[error(
        "--generate: need 2..=200 sites and at least 5 nodes per site (got {nodes} nodes, {sites} sites)"
    )]
    OutOfRange { nodes: usize, sites: usize },
}

impl std::str::FromStr for Shape {
    type Err = ShapeError;
    fn from_str(s: &str) -> Result<Self, ShapeError> {
        let mut shape = Shape {
            nodes: 500,
            sites: 5,
        };
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| ShapeError::NotKeyValue(part.into()))?;
            let n: usize = v
                .trim()
                .parse()
                .map_err(|_| ShapeError::NotANumber(v.into()))?;
            match k.trim() {
                "nodes" => shape.nodes = n,
                "sites" => shape.sites = n,
                other => return Err(ShapeError::UnknownKey(other.into())),
            }
        }
        if !(2..=200).contains(&shape.sites)
            || shape.nodes < shape.sites * 5
            || shape.nodes / shape.sites > 250
        {
            return Err(ShapeError::OutOfRange {
                nodes: shape.nodes,
                sites: shape.sites,
            });
        }
        Ok(shape)
    }
}

/// A generated scenario: its YAML text and the nodes that run an agent.
pub struct Generated {
    pub yaml: String,
    pub agents: BTreeSet<String>,
}

/// When the generated timeline crashes the gateway carrying the probe flow: after the whole
/// cluster can have converged. The controller writes Nodes one API round trip at a time (two
/// turmoil ticks each), so convergence grows with the node count.
pub fn crash_at_secs(nodes: usize) -> u64 {
    (nodes as u64 * 60 / 1000).max(90)
}

pub fn generate(shape: Shape, seed: u64) -> Generated {
    let mut rng = SimRng::new(seed ^ 0x9e11_e7a7);
    let mut y = String::new();
    let mut agents = BTreeSet::new();
    let mut sampled = Vec::new();
    let per_site = shape.nodes / shape.sites;
    let _ = writeln!(
        y,
        "description: generated {} nodes in {} sites\ntopology:\n  sites:",
        shape.nodes, shape.sites
    );
    for s in 0..shape.sites {
        let _ = writeln!(y, "    - {{name: s{s:02}, underlay: [10.{s}.0.0/16]}}");
    }
    let _ = writeln!(y, "  nodes:");
    for s in 0..shape.sites {
        let gateways = 2 + rng.below(3) as usize;
        let extra = if s < shape.nodes % shape.sites { 1 } else { 0 };
        for i in 0..per_site + extra {
            let name = format!("s{s:02}-n{i:03}");
            let ip = format!("10.{s}.{}.{}", i / 250 + 1, i % 250 + 1);
            if i < gateways {
                let _ = writeln!(
                    y,
                    "    - {{name: {name}, site: s{s:02}, internalIP: {ip}, externalIP: 198.18.{s}.{}, role: gateway, labels: {{pool: p{s:02}}}}}",
                    i + 1
                );
                agents.insert(name);
            } else {
                let _ = writeln!(y, "    - {{name: {name}, site: s{s:02}, internalIP: {ip}}}");
                if i == gateways && s < 2 {
                    agents.insert(name.clone());
                    sampled.push(name);
                }
            }
        }
    }
    let sites: Vec<String> = (0..shape.sites).map(|s| format!("s{s:02}")).collect();
    let _ = writeln!(
        y,
        "  links:\n    - {{name: internet, kind: internet, sites: [{}], latency: 10ms}}",
        sites.join(", ")
    );
    let _ = writeln!(y, "objects:");
    let health = "healthCheckSettings: {transmitInterval: 200ms, receiveInterval: 200ms, detectMultiplier: 3}";
    for s in 0..shape.sites {
        let _ = writeln!(
            y,
            "  - {{apiVersion: net.unbounded-cloud.io/v1alpha1, kind: Site, metadata: {{name: s{s:02}}}, spec: {{nodeCidrs: [10.{s}.0.0/16], podCidrAssignments: [{{cidrBlocks: [10.{}.0.0/16]}}], tunnelProtocol: VXLAN, {health}}}}}",
            100 + s
        );
        let _ = writeln!(
            y,
            "  - {{apiVersion: net.unbounded-cloud.io/v1alpha1, kind: GatewayPool, metadata: {{name: p{s:02}}}, spec: {{type: External, nodeSelector: {{unbounded-cloud.io/unbounded-net-gateway: \"true\", pool: p{s:02}}}, {health}}}}}"
        );
        let _ = writeln!(
            y,
            "  - {{apiVersion: net.unbounded-cloud.io/v1alpha1, kind: SiteGatewayPoolAssignment, metadata: {{name: a{s:02}}}, spec: {{sites: [s{s:02}], gatewayPools: [p{s:02}], {health}}}}}"
        );
    }
    let pools: Vec<String> = (0..shape.sites).map(|s| format!("p{s:02}")).collect();
    let _ = writeln!(
        y,
        "  - {{apiVersion: net.unbounded-cloud.io/v1alpha1, kind: GatewayPoolPeering, metadata: {{name: all-pools}}, spec: {{gatewayPools: [{}], tunnelProtocol: WireGuard, {health}}}}}",
        pools.join(", ")
    );
    // The probe flow: sampled worker of s01 → sampled worker of s00, through gateways.
    let (from, to) = (&sampled[1], &sampled[0]);
    let _ = writeln!(
        y,
        "flows:\n  - {{name: probe, from: {from}, to: {to}, protocol: udp, port: 5201, rate: 100}}"
    );
    let crash_at = crash_at_secs(shape.nodes);
    let _ = writeln!(
        y,
        "timeline:\n  - {{at: {crash_at}s, name: kill-gw, gatewayCrash: {{carrying: probe}}}}"
    );
    let _ = writeln!(
        y,
        "expect:\n  - connectivity: {{name: converged, from: all, to: all, within: {crash_at}s}}\n  - failover: {{name: gateway-failover, flow: probe, after: kill-gw, within: 5s}}\n  - noPlaintext: {{}}"
    );
    Generated { yaml: y, agents }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_scenario_parses_with_the_requested_shape() {
        let shape: Shape = "nodes=60,sites=4".parse().unwrap();
        let g = generate(shape, 3);
        let s = unbounded_scenario::Scenario::parse("gen", &g.yaml)
            .unwrap_or_else(|e| panic!("{e}\n{}", g.yaml));
        assert_eq!(s.topology.nodes.len(), 60);
        assert_eq!(s.topology.sites.len(), 4);
        for site in &s.topology.sites {
            let gws = s.gateways_in(&site.name).count();
            assert!((2..=4).contains(&gws), "{} has {gws} gateways", site.name);
        }
        // Gateways plus one worker in each of the probe flow's two sites run agents.
        assert_eq!(
            g.agents.len(),
            s.topology.nodes.iter().filter(|n| n.is_gateway()).count() + 2
        );
        assert_eq!(crash_at_secs(500), 90);
        assert_eq!(crash_at_secs(5_000), 300);
        assert!("nodes=5,sites=1".parse::<Shape>().is_err());
        assert!("nodes=x".parse::<Shape>().is_err());
        assert!("colour=blue".parse::<Shape>().is_err());
    }
}
