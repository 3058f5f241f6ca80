//! Site: a physical location whose nodes are found by InternalIP and get pod CIDRs from it.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conditions, HealthCheckSettings, TunnelProtocol};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
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
#[x_kube(
    validation = super::rules::pools_disjoint(),
    validation = super::rules::pools_apart_from_nodes()
)]
pub struct SiteSpec {
    /// Node InternalIPs inside these prefixes belong to this Site.
    #[schemars(length(min = 1, max = 64), inner(length(max = 64)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(
        validation = super::rules::cidr_list("nodeCidrs"),
        validation = super::rules::canonical_cidr_list("nodeCidrs")
    )]
    pub node_cidrs: Vec<String>,
    /// Pools that per-node pod CIDR blocks are cut from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
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
    #[schemars(length(max = 64), inner(length(max = 64)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(
        validation = super::rules::cidr_list("nonMasqueradeCIDRs"),
        validation = super::rules::canonical_cidr_list("nonMasqueradeCIDRs")
    )]
    pub non_masquerade_cidrs: Vec<String>,
    /// Prefixes reachable locally at this Site without the overlay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(
        validation = super::rules::cidr_list("localCidrs"),
        validation = super::rules::canonical_cidr_list("localCidrs")
    )]
    pub local_cidrs: Vec<String>,
    /// Encapsulation between nodes of this Site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_protocol: Option<TunnelProtocol>,
    /// MTU of the tunnel interface for links governed by this Site (576–9000).
    #[serde(rename = "tunnelMTU", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 576, max = 9000))]
    pub tunnel_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_settings: Option<HealthCheckSettings>,
}

/// One pool of pod address space and how it is cut per node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = super::rules::block_fits_pools(4),
    validation = super::rules::block_fits_pools(6),
    validation = super::rules::block_family_present(4),
    validation = super::rules::block_family_present(6)
)]
pub struct PodCidrAssignment {
    /// The pool's prefixes (IPv4 and/or IPv6).
    #[schemars(length(min = 1, max = 8), inner(length(max = 64)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(
        validation = super::rules::cidr_list("cidrBlocks"),
        validation = super::rules::canonical_cidr_list("cidrBlocks")
    )]
    pub cidr_blocks: Vec<String>,
    /// Prefix length handed to each node, per family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_block_sizes: Option<NodeBlockSizes>,
    /// Only nodes whose name matches one of these regular expressions (all when empty).
    /// CEL cannot compile a regular expression, so the controller checks them and reports a
    /// bad one as a condition on the Site.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 256)))]
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
    /// IPv4 prefix length per node (default 24; /16–/28).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16, max = 28))]
    pub ipv4: Option<u8>,
    /// IPv6 prefix length per node (default 64; /48–/120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 48, max = 120))]
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
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolUsage {
    pub cidr: String,
    pub allocated: u64,
    pub capacity: u64,
}
