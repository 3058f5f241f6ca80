//! Site: a physical location whose nodes are found by InternalIP and get pod CIDRs from it.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conditions, HealthCheckSettings, TunnelProtocol};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "net.unbounded-cloud.io",
    version = "v1alpha1",
    kind = "Site",
    shortname = "site",
    status = "SiteStatus",
    printcolumn = r#"{"name":"Nodes","type":"integer","jsonPath":".status.nodeCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SiteSpec {
    /// Node InternalIPs inside these prefixes belong to this Site.
    pub node_cidrs: Vec<String>,
    /// Pools that per-node pod CIDR blocks are cut from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_cidr_assignments: Vec<PodCidrAssignment>,
    /// Write the CNI configuration on this Site's nodes (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage_cni_plugin: Option<bool>,
    /// Destinations that pod traffic reaches without SNAT.
    #[serde(
        rename = "nonMasqueradeCIDRs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_masquerade_cidrs: Vec<String>,
    /// Prefixes reachable locally at this Site without the overlay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_cidrs: Vec<String>,
    /// Encapsulation between nodes of this Site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_protocol: Option<TunnelProtocol>,
    /// MTU of the tunnel interface for links governed by this Site (576–9000).
    #[serde(rename = "tunnelMTU", default, skip_serializing_if = "Option::is_none")]
    pub tunnel_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_settings: Option<HealthCheckSettings>,
}

/// One pool of pod address space and how it is cut per node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodCidrAssignment {
    /// The pool's prefixes (IPv4 and/or IPv6).
    pub cidr_blocks: Vec<String>,
    /// Prefix length handed to each node, per family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_block_sizes: Option<NodeBlockSizes>,
    /// Only nodes whose name matches one of these regular expressions (all when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_regex: Vec<String>,
    /// Lower wins when several assignments match a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Hand out new blocks from this pool (default true); existing blocks are kept either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_enabled: Option<bool>,
}

/// Per-node block prefix lengths.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeBlockSizes {
    /// IPv4 prefix length per node (default 24).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<u8>,
    /// IPv6 prefix length per node (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<u8>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteStatus {
    #[serde(default)]
    pub node_count: u32,
    #[serde(default)]
    pub slice_count: u32,
    /// Per-pool usage: allocated and total blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolUsage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Conditions,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolUsage {
    pub cidr: String,
    pub allocated: u64,
    pub capacity: u64,
}
