//! GatewayPool: nodes that route between sites.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conditions, HealthCheckSettings, TunnelProtocol};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "net.unbounded-cloud.io",
    version = "v1alpha1",
    kind = "GatewayPool",
    shortname = "gwp",
    status = "GatewayPoolStatus",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Gateways","type":"integer","jsonPath":".status.nodeCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPoolSpec {
    /// External pools are reached over members' ExternalIPs; Internal over InternalIPs.
    #[serde(rename = "type")]
    pub pool_type: GatewayPoolType,
    /// Nodes carrying all these labels are members. Keys and values follow the Kubernetes
    /// label syntax: a selector no node can carry would silently select nothing.
    #[schemars(extend(
        "maxProperties" = 32,
        "additionalProperties" = {
            "type": "string",
            "maxLength": 63,
            "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
        }
    ))]
    #[x_kube(
        validation = super::rules::non_empty_selector("nodeSelector"),
        validation = super::rules::label_keys("nodeSelector")
    )]
    pub node_selector: BTreeMap<String, String>,
    /// Extra prefixes this pool routes to (beyond the pod CIDRs of its sites).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 64)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(
        validation = super::rules::cidr_list("routedCidrs"),
        validation = super::rules::canonical_cidr_list("routedCidrs")
    )]
    pub routed_cidrs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_protocol: Option<TunnelProtocol>,
    #[serde(rename = "tunnelMTU", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 576, max = 9000))]
    pub tunnel_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_settings: Option<HealthCheckSettings>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum GatewayPoolType {
    #[default]
    External,
    Internal,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPoolStatus {
    #[serde(default)]
    pub node_count: u32,
    /// Member gateways, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<GatewayNodeStatus>,
    /// Sites bound to this pool by a SiteGatewayPoolAssignment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connected_sites: Vec<String>,
    /// Sites reachable through this pool, directly or over pool peerings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reachable_sites: Vec<ReachableSite>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayNodeStatus {
    pub name: String,
    pub site_name: String,
    #[serde(rename = "internalIPs", default)]
    pub internal_ips: Vec<String>,
    #[serde(rename = "externalIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    pub wire_guard_public_key: String,
    pub wire_guard_port: u16,
    /// Overlay address:port of the node's health responder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_endpoints: Vec<String>,
    #[serde(rename = "podCIDRs", default, skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReachableSite {
    pub name: String,
    /// Pool hops to get there: 0 = connected to this pool.
    pub path_length: u32,
    /// The next pool on the path (absent when connected directly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}
