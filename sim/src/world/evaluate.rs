//! The continuous checks of a run: API-side invariants on the stored objects, and the
//! forwarding model traced over every (sampled) pod pair to judge the expectations.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use k8s_openapi::api::core::v1::Node;
use unbounded_net::cluster::Cluster;
use unbounded_net::core::{NodeFacts, Snapshot};

use super::{Run, Sample, now};
use crate::expect::{Observation, Verdict, longest_window};
use crate::forwarding::{PathTrace, trace};
use crate::invariants;
use crate::trace::{fmt_time, fnv1a};

/// How often runs of more than 500 nodes check the API-side invariants.
const LARGE_API_CHECK_EVERY: Duration = Duration::from_secs(1);

impl Run<'_> {
    pub(super) fn pod_ip(&self, node: &str) -> Option<IpAddr> {
        let v = self.first_cidrs.get(node)?;
        let net = v.first()?;
        Some(match net.network() {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 2).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 2).into()),
        })
    }

    /// Which present node owns an address: longest-prefix match over the present nodes' pod
    /// CIDRs, indexed once per call (the forwarding model asks at every hop).
    pub(super) fn owner_fn(&self) -> impl Fn(IpAddr) -> Option<String> + '_ {
        let index: BTreeMap<IpNet, &str> = self
            .present
            .iter()
            .filter_map(|n| Some((n.as_str(), self.first_cidrs.get(n)?)))
            .flat_map(|(n, cidrs)| cidrs.iter().map(move |c| (c.trunc(), n)))
            .collect();
        move |ip| {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            (0..=max)
                .rev()
                .find_map(|len| index.get(&IpNet::new(ip, len).ok()?.trunc()))
                .map(|n| n.to_string())
        }
    }

    pub(super) fn trace_flow(&self, flow: &str) -> Option<PathTrace> {
        let f = self.scenario.flow(flow)?;
        let dst = self.pod_ip(&f.to)?;
        let o = self.obs.borrow();
        let owner = self.owner_fn();
        Some(trace(
            &o.nodes,
            &owner,
            &self.reach,
            &f.from,
            dst,
            fnv1a(flow.as_bytes()),
        ))
    }

    /// Checks the API-side invariants when the store changed.
    pub(super) fn check_api(&mut self) -> Result<(), String> {
        let rv = self.cluster.resource_version();
        if rv == self.last_rv {
            return Ok(());
        }
        // Large runs check the API side once per virtual second instead of after every step:
        // the store decodes every Node on a list, and at 5,000 Nodes a list every 100 ms was a
        // quarter of the run's CPU (measured with perf).
        if self.scenario.topology.nodes.len() > 500 && self.sim.elapsed() < self.next_api_check {
            return Ok(());
        }
        self.next_api_check = self.sim.elapsed() + LARGE_API_CHECK_EVERY;
        self.last_rv = rv;
        let Some(Ok(nodes)) = now(self.cluster.list::<Node>(None)) else {
            return Ok(());
        };
        let Some(Ok(sites)) = now(self.cluster.list::<unbounded_net::api::Site>(None)) else {
            return Ok(());
        };
        let mut snap = Snapshot::default();
        for s in sites.items {
            snap.sites
                .insert(s.metadata.name.clone().unwrap_or_default(), s.spec);
        }
        for n in &nodes.items {
            let f = NodeFacts::from_node(n);
            snap.nodes.insert(f.name.clone(), f);
        }
        invariants::check_api(&snap, &mut self.first_cidrs)?;
        let expected = self.scenario.initial_nodes().count();
        if self.all_allocated_at.is_none()
            && snap.nodes.len() >= expected
            && snap.nodes.values().all(|f| !f.pod_cidrs.is_empty())
        {
            let at = self.sim.elapsed();
            self.all_allocated_at = Some(at);
            self.trace.record(
                at,
                format!("every Node ({}) has its pod CIDRs", snap.nodes.len()),
            );
        }
        Ok(())
    }

    pub(super) fn evaluate(&mut self, at: Duration) -> Result<(), String> {
        let present: Vec<String> = self.present.iter().cloned().collect();
        let mut pairs = BTreeMap::new();
        let total = present.len() * present.len().saturating_sub(1);
        let stride = (total / self.cfg.max_pairs.max(1)).max(1);
        let mut k = 0usize;
        let mut plaintext = Vec::new();
        {
            let o = self.obs.borrow();
            let owner = self.owner_fn();
            for s in &present {
                for d in &present {
                    if s == d {
                        continue;
                    }
                    k += 1;
                    if !k.is_multiple_of(stride) {
                        continue;
                    }
                    let t = match self.pod_ip(d) {
                        Some(ip) => trace(
                            &o.nodes,
                            &owner,
                            &self.reach,
                            s,
                            ip,
                            fnv1a(format!("{s}>{d}").as_bytes()),
                        ),
                        None => PathTrace {
                            hops: vec![],
                            outcome: crate::forwarding::Outcome::Dropped {
                                at: d.clone(),
                                reason: "no pod CIDR yet".into(),
                            },
                        },
                    };
                    for h in &t.hops {
                        if let Some(link) = self.public_link(&h.from, &h.to, h.underlay)
                            && h.encap != unbounded_net::core::Encap::WireGuard
                        {
                            plaintext.push((link, format!("{} -{}-> {}", h.from, h.encap, h.to)));
                        }
                    }
                    pairs.insert((s.clone(), d.clone()), t);
                }
            }
        }
        let delivered = pairs.values().filter(|t| t.delivered()).count();
        let planned = self
            .obs
            .borrow()
            .nodes
            .values()
            .filter(|v| v.up && v.applied.is_some())
            .count();
        self.samples.push(Sample {
            at_ms: at.as_millis() as u64,
            delivered_pairs: delivered,
            traced_pairs: pairs.len(),
            planned_nodes: planned,
        });
        let full = !pairs.is_empty() && delivered == pairs.len();
        if full && self.converged_at.is_none() {
            self.converged_at = Some(at);
            self.trace.record(
                at,
                format!("converged: {delivered}/{} pairs delivered", pairs.len()),
            );
        }
        if full && self.reconverged.is_none() && self.last_heal > Duration::ZERO {
            self.reconverged = Some(at.saturating_sub(self.last_heal));
        }
        self.faults.observe(at, full);
        let mut flows = BTreeMap::new();
        for f in &self.scenario.flows {
            if let Some(t) = self.trace_flow(&f.name) {
                flows.insert(f.name.clone(), t);
            }
        }
        let site_of = self.reach.site_of.clone();
        let obs = Observation {
            now: at,
            fired: &self.fired,
            flows: &flows,
            pairs: &pairs,
            site_of: &site_of,
            plaintext: &plaintext,
            faults: &self.faults,
            settle: self.heal_deadline(),
        };
        let rows = self
            .expectations
            .iter_mut()
            .zip(&self.scenario.expect)
            .chain(
                self.after_heal
                    .iter_mut()
                    .map(|(i, r)| (r, &self.scenario.expect[*i])),
            );
        for (r, e) in rows {
            let before = r.verdict.clone();
            r.update(e, &obs);
            if r.verdict != before && r.verdict != Verdict::Pending {
                self.trace.record(
                    at,
                    format!("expectation {}: {:?} {}", r.label, r.verdict, r.detail),
                );
            }
        }
        // Full connectivity within the deadline after the last fault healed.
        let deadline = self.last_heal + self.heal_deadline();
        if self.last_heal > Duration::ZERO && at > deadline && self.reconverged.is_none() && !full {
            let bad = pairs
                .iter()
                .find(|(_, t)| !t.delivered())
                .map(|((s, _), t)| t.describe(s))
                .unwrap_or_default();
            return Err(format!(
                "no full connectivity {} after the last fault healed at {}: {bad}",
                fmt_time(self.heal_deadline()),
                fmt_time(self.last_heal)
            ));
        }
        Ok(())
    }

    pub(super) fn heal_deadline(&self) -> Duration {
        longest_window(self.scenario).max(Duration::from_secs(30))
    }

    /// The internet link a hop crosses, if it crosses one: different sites and the packet
    /// travels to the peer's external IP, or no private link joins the two sites.
    pub(super) fn public_link(&self, from: &str, to: &str, underlay: IpAddr) -> Option<String> {
        let sa = self.reach.site_of.get(from)?;
        let sb = self.reach.site_of.get(to)?;
        if sa == sb {
            return None;
        }
        let to_node = self.scenario.node(to)?;
        let private = self
            .scenario
            .topology
            .links
            .iter()
            .find(|l| !l.is_public() && l.joins(sa) && l.joins(sb));
        if private.is_some() && to_node.external_ip != Some(underlay) {
            return None;
        }
        self.scenario
            .topology
            .links
            .iter()
            .find(|l| l.is_public() && l.joins(sa) && l.joins(sb))
            .map(|l| l.name.clone())
    }
}
