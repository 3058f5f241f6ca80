//! The machines of a run: starting agent hosts, crashing and restarting them, and keeping
//! turmoil's links (latency, loss, partitions) in step with the scenario's reachability.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use unbounded_net::cluster::Cluster;
use unbounded_net::core::PlanSettings;

use super::{CONTROLLERS, Run, now};
use crate::reach::Reach;

impl Run<'_> {
    pub(super) fn start_node(&mut self, name: &str) {
        let Some(n) = self.scenario.node(name) else {
            return;
        };
        let mut obj = n.kube_node();
        if let Some(agents) = &self.cfg.agents
            && !agents.contains(name)
        {
            // A Node without an agent host: its key is published with the Node.
            obj.metadata.annotations = Some(BTreeMap::from([
                (
                    unbounded_net::api::WG_PUBKEY_ANNOTATION.to_string(),
                    crate::agent::wireguard_key(name),
                ),
                (
                    unbounded_net::api::UNDERLAY_MTU_ANNOTATION.to_string(),
                    self.site_mtu(&n.site).to_string(),
                ),
            ]));
            let _ = now(self.cluster.create::<Node>(None, &obj));
            return;
        }
        let _ = now(self.cluster.create::<Node>(None, &obj));
        self.present.insert(name.to_string());
        self.obs.borrow_mut().node_mut(name).up = true;
        let obs = self.obs.clone();
        let node = name.to_string();
        if self.registered.contains(name) {
            self.down_hosts.remove(name);
            self.sim.bounce(name);
        } else {
            self.registered.insert(name.to_string());
            // The agent detects its underlay MTU on its own NIC: the site's MTU here. Peers
            // that have published none yet are assumed to have the default.
            let settings = PlanSettings::default();
            let mtu = self.site_mtu(&n.site);
            self.sim.host(name, move || {
                crate::agent::run(node.clone(), obs.clone(), settings, mtu)
            });
            self.wire_host(name);
        }
        self.joins += 1;
    }

    /// The MTU of a site's underlay (what its machines' NICs have).
    fn site_mtu(&self, site: &str) -> u32 {
        self.scenario.site(site).map(|s| s.mtu).unwrap_or(1500)
    }

    pub(super) fn crash_machine(&mut self, name: &str) {
        self.sim.crash(name);
        self.down_hosts.insert(name.to_string());
        let mut o = self.obs.borrow_mut();
        let v = o.node_mut(name);
        v.up = false;
        v.kernel = Default::default();
        v.applied = None;
        v.pulled.clear();
        v.declared_down.clear();
    }

    pub(super) fn restart_machine(&mut self, name: &str) {
        self.down_hosts.remove(name);
        if !CONTROLLERS.contains(&name) {
            self.obs.borrow_mut().node_mut(name).up = true;
        }
        self.sim.bounce(name);
    }

    /// Partitions or repairs every host pair whose reachability changed.
    pub(super) fn apply_reach(&mut self, hosts_before: &Reach) {
        let hosts: Vec<String> = self
            .reach
            .site_of
            .keys()
            .filter(|h| self.registered.contains(*h))
            .cloned()
            .collect();
        let sites: Vec<String> = self
            .scenario
            .topology
            .sites
            .iter()
            .map(|s| s.name.clone())
            .collect();
        if self.reach.is_whole(&sites) && hosts_before.is_whole(&sites) {
            return;
        }
        for (i, a) in hosts.iter().enumerate() {
            for b in &hosts[i + 1..] {
                let was = hosts_before.hosts_connected(a, b);
                let is = self.reach.hosts_connected(a, b);
                if was && !is {
                    self.sim.partition(a.as_str(), b.as_str());
                } else if !was && is {
                    self.sim.repair(a.as_str(), b.as_str());
                }
            }
        }
    }

    /// Latency and loss of the scenario's links, and the current partitions, between `host`
    /// and every other registered host.
    pub(super) fn wire_host(&mut self, host: &str) {
        let Some(site) = self.reach.site_of.get(host).cloned() else {
            return;
        };
        let others: Vec<(String, String)> = self
            .reach
            .site_of
            .iter()
            .filter(|(h, _)| self.registered.contains(*h) && h.as_str() != host)
            .map(|(h, s)| (h.clone(), s.clone()))
            .collect();
        // Pairwise settings are quadratic in hosts; large runs keep the global latency.
        let pairwise = self.reach.site_of.len() <= 400;
        for (other, osite) in &others {
            if pairwise
                && *osite != site
                && let Some(link) = self
                    .scenario
                    .topology
                    .links
                    .iter()
                    .find(|l| l.joins(&site) && l.joins(osite))
            {
                self.sim.set_link_latency(
                    host,
                    other.as_str(),
                    link.latency.as_std().max(Duration::from_millis(1)),
                );
                if link.loss_percent > 0.0 {
                    self.sim
                        .set_link_fail_rate(host, other.as_str(), link.loss_percent / 100.0);
                }
            }
            if !self.reach.hosts_connected(host, other) {
                self.sim.partition(host, other.as_str());
            }
        }
    }

    pub(super) fn set_site_loss(&mut self, a: &str, b: &str, p: f64) {
        let hosts: Vec<(String, String)> = self
            .reach
            .site_of
            .iter()
            .filter(|(h, _)| self.registered.contains(*h))
            .map(|(h, s)| (h.clone(), s.clone()))
            .collect();
        for (x, sx) in &hosts {
            for (y, sy) in &hosts {
                if x < y && ((sx == a && sy == b) || (sx == b && sy == a)) {
                    self.sim.set_link_fail_rate(x.as_str(), y.as_str(), p);
                }
            }
        }
    }
}
