//! The observed snapshot every planning function reads.
//!
//! Shells build it from whatever they watch: the controller from Nodes and the six CRDs, the
//! node agent from SiteNodeSlices and GatewayPool status. Malformed input from the cluster is
//! recorded as a [`NodeProblem`] on the node it came from, never a panic.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;

use crate::api::{
    GatewayPoolPeeringSpec, GatewayPoolSpec, SITE_LABEL, SiteGatewayPoolAssignmentSpec,
    SitePeeringSpec, SiteSpec, UNDERLAY_MTU_ANNOTATION, WG_PUBKEY_ANNOTATION,
};

/// What the planner knows about one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    pub name: String,
    pub internal_ips: Vec<IpAddr>,
    pub external_ips: Vec<IpAddr>,
    pub labels: BTreeMap<String, String>,
    /// `spec.podCIDRs` as the API shows them (immutable once set).
    pub pod_cidrs: Vec<IpNet>,
    /// Base64 WireGuard public key, if the agent has published a well-formed one.
    pub wg_public_key: Option<String>,
    /// MTU of the node's underlay interface, if its agent has published a valid one.
    pub underlay_mtu: Option<u32>,
    /// Site the node is labelled with (may be stale; the planner recomputes it).
    pub site_label: Option<String>,
    pub problems: Vec<NodeProblem>,
}

/// Something wrong with a node object; the node is still planned with what is usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NodeProblem {
    #[error("node {node}: address {value:?} in status.addresses is not an IP address")]
    MalformedAddress { node: String, value: String },
    #[error("node {node}: pod CIDR {value:?} is not a CIDR")]
    MalformedPodCidr { node: String, value: String },
    #[error("node {node}: annotation {WG_PUBKEY_ANNOTATION} is not a 32-byte base64 key")]
    MalformedPublicKey { node: String },
    #[error(
        "node {node}: underlay MTU {value:?} is not a number in 576..=65535; the cluster default is used"
    )]
    MalformedUnderlayMtu { node: String, value: String },
}

impl NodeFacts {
    /// Reads a Kubernetes Node, keeping whatever is well-formed.
    pub fn from_node(node: &Node) -> Self {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mut facts = NodeFacts {
            name: name.clone(),
            ..Default::default()
        };
        facts.labels = node.metadata.labels.clone().unwrap_or_default();
        facts.site_label = facts.labels.get(SITE_LABEL).cloned();
        for addr in node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
        {
            let list = match addr.type_.as_str() {
                "InternalIP" => &mut facts.internal_ips,
                "ExternalIP" => &mut facts.external_ips,
                _ => continue,
            };
            match addr.address.parse::<IpAddr>() {
                Ok(ip) => list.push(ip),
                Err(_) => facts.problems.push(NodeProblem::MalformedAddress {
                    node: name.clone(),
                    value: addr.address.clone(),
                }),
            }
        }
        let spec = node.spec.as_ref();
        let cidrs = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
        let cidrs = if cidrs.is_empty() {
            spec.and_then(|s| s.pod_cidr.clone()).into_iter().collect()
        } else {
            cidrs
        };
        for c in cidrs {
            match c.parse::<IpNet>() {
                Ok(net) => facts.pod_cidrs.push(net),
                Err(_) => facts.problems.push(NodeProblem::MalformedPodCidr {
                    node: name.clone(),
                    value: c,
                }),
            }
        }
        if let Some(key) = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(WG_PUBKEY_ANNOTATION))
        {
            if is_wireguard_key(key) {
                facts.wg_public_key = Some(key.clone());
            } else {
                facts
                    .problems
                    .push(NodeProblem::MalformedPublicKey { node: name.clone() });
            }
        }
        if let Some(value) = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(UNDERLAY_MTU_ANNOTATION))
        {
            match super::mtu::parse_underlay_mtu(value) {
                Some(mtu) => facts.underlay_mtu = Some(mtu),
                None => facts.problems.push(NodeProblem::MalformedUnderlayMtu {
                    node: name,
                    value: value.clone(),
                }),
            }
        }
        facts
    }
}

/// A WireGuard key is 32 bytes, standard base64 with padding: 44 characters ending in '='.
pub fn is_wireguard_key(s: &str) -> bool {
    s.len() == 44
        && s.ends_with('=')
        && s[..43].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        // The last data character carries 4 padding bits that must be zero.
        && matches!(s.as_bytes()[42], b'A' | b'E' | b'I' | b'M' | b'Q' | b'U' | b'Y' | b'c' | b'g' | b'k' | b'o' | b's' | b'w' | b'0' | b'4' | b'8')
}

/// Everything the planner reads, keyed by object name (sorted: planning never depends on
/// the order objects were listed in).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub nodes: BTreeMap<String, NodeFacts>,
    pub sites: BTreeMap<String, SiteSpec>,
    pub gateway_pools: BTreeMap<String, GatewayPoolSpec>,
    pub assignments: BTreeMap<String, SiteGatewayPoolAssignmentSpec>,
    pub site_peerings: BTreeMap<String, SitePeeringSpec>,
    pub pool_peerings: BTreeMap<String, GatewayPoolPeeringSpec>,
}

impl Snapshot {
    /// Sets `node`'s underlay MTU to what its own agent measured: the agent knows its own MTU
    /// before the controller has carried the published value back in a slice.
    pub fn set_own_underlay_mtu(&mut self, node: &str, mtu: u32) {
        if let Some(facts) = self.nodes.get_mut(node) {
            facts.underlay_mtu = Some(mtu);
        }
    }
}
