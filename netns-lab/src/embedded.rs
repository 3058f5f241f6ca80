//! The embedded control plane: the core planner in the lab process, fed with the scenario's
//! objects and Node facts built from the topology, as the controller would see them.
//!
//! It does what the controller does for a data plane to exist — site assignment (labels),
//! pod CIDR allocation, gateway pool membership — with exactly the `core` functions the
//! controller calls, then plans every node's data plane as that node's agent would.

use std::collections::BTreeMap;

use ipnet::IpNet;
use unbounded_net::api::SITE_LABEL;
use unbounded_net::core::{
    NodeDataplane, NodeFacts, PlanIndex, PlanSettings, PodCidrAllocator, Snapshot, assign_sites,
    plan_node,
};
use unbounded_scenario::{KubeObject, Scenario};

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("node {node}: matches no Site's nodeCidrs (or matches two): {detail}")]
    NoSite { node: String, detail: String },
    #[error("node {node}: pod CIDR allocation failed: {detail}")]
    Alloc { node: String, detail: String },
    #[error("node {node}: planning failed: {detail}")]
    Plan { node: String, detail: String },
}

/// What the control plane decided.
#[derive(Clone, Debug)]
pub struct ClusterPlan {
    pub snapshot: Snapshot,
    /// Node → Site object name.
    pub site_of: BTreeMap<String, String>,
    pub dataplanes: BTreeMap<String, NodeDataplane>,
    /// Planner problems, for the report.
    pub problems: Vec<String>,
}

impl ClusterPlan {
    pub fn pod_cidrs(&self, node: &str) -> Vec<IpNet> {
        self.snapshot
            .nodes
            .get(node)
            .map(|n| n.pod_cidrs.clone())
            .unwrap_or_default()
    }
}

/// The scenario's objects as the snapshot's specs.
fn objects_into(snapshot: &mut Snapshot, scenario: &Scenario) {
    for m in &scenario.objects {
        let name = m.name().to_string();
        match &m.object {
            KubeObject::Site(o) => {
                snapshot.sites.insert(name, o.spec.clone());
            }
            KubeObject::GatewayPool(o) => {
                snapshot.gateway_pools.insert(name, o.spec.clone());
            }
            KubeObject::SiteGatewayPoolAssignment(o) => {
                snapshot.assignments.insert(name, o.spec.clone());
            }
            KubeObject::SitePeering(o) => {
                snapshot.site_peerings.insert(name, o.spec.clone());
            }
            KubeObject::GatewayPoolPeering(o) => {
                snapshot.pool_peerings.insert(name, o.spec.clone());
            }
        }
    }
}

/// Plans the cluster: `present` nodes only, each with the WireGuard public key its agent
/// published (`keys`).
pub fn plan_cluster(
    scenario: &Scenario,
    present: &[String],
    keys: &BTreeMap<String, String>,
    existing_pod_cidrs: &BTreeMap<String, Vec<IpNet>>,
) -> Result<ClusterPlan, ControlPlaneError> {
    let mut snapshot = Snapshot::default();
    objects_into(&mut snapshot, scenario);
    for n in scenario
        .topology
        .nodes
        .iter()
        .filter(|n| present.contains(&n.name))
    {
        let facts = NodeFacts {
            name: n.name.clone(),
            internal_ips: vec![n.internal_ip],
            external_ips: n.external_ip.into_iter().collect(),
            labels: n.kube_labels(),
            wg_public_key: keys.get(&n.name).cloned(),
            // Node.spec.podCIDRs are immutable once set: a re-plan keeps them.
            pod_cidrs: existing_pod_cidrs.get(&n.name).cloned().unwrap_or_default(),
            ..Default::default()
        };
        snapshot.nodes.insert(n.name.clone(), facts);
    }

    // Site assignment: the label the controller writes.
    let assignment = assign_sites(&snapshot);
    let mut site_of = BTreeMap::new();
    for (node, m) in &assignment.nodes {
        let Some(site) = m.site() else {
            return Err(ControlPlaneError::NoSite {
                node: node.clone(),
                detail: format!("{m:?}"),
            });
        };
        site_of.insert(node.clone(), site.to_string());
    }
    for (node, site) in &site_of {
        let facts = snapshot.nodes.get_mut(node).expect("assigned nodes exist");
        facts.labels.insert(SITE_LABEL.into(), site.clone());
        facts.site_label = Some(site.clone());
    }

    // Pod CIDRs, in node-name order (what a fresh controller does).
    let mut alloc = PodCidrAllocator::from_snapshot(&snapshot);
    for (node, site) in &site_of {
        if !snapshot.nodes[node].pod_cidrs.is_empty() {
            continue;
        }
        let cidrs = alloc
            .allocate(site, node)
            .map_err(|e| ControlPlaneError::Alloc {
                node: node.clone(),
                detail: e.to_string(),
            })?;
        snapshot.nodes.get_mut(node).expect("exists").pod_cidrs = cidrs;
    }

    // The underlay MTU the planner assumes: the smallest of the scenario's sites.
    let underlay_mtu = scenario
        .topology
        .sites
        .iter()
        .map(|s| s.mtu)
        .min()
        .unwrap_or(1500);
    let settings = PlanSettings {
        underlay_mtu,
        ..Default::default()
    };
    let index = PlanIndex::new(&snapshot, settings);
    let mut problems: Vec<String> = index.problems().iter().map(|p| p.to_string()).collect();
    let mut dataplanes = BTreeMap::new();
    for node in site_of.keys() {
        let plan = plan_node(&index, node).map_err(|e| ControlPlaneError::Plan {
            node: node.clone(),
            detail: e.to_string(),
        })?;
        problems.extend(plan.problems.iter().map(|p| format!("{node}: {p}")));
        dataplanes.insert(node.clone(), plan.dataplane);
    }
    drop(index);
    Ok(ClusterPlan {
        snapshot,
        site_of,
        dataplanes,
        problems,
    })
}
