//! The three binding resources: SiteGatewayPoolAssignment, SitePeering, GatewayPoolPeering.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Conditions, HealthCheckSettings, TunnelProtocol};

/// Binds sites to the gateway pools that carry their cross-site traffic.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "net.unbounded-cloud.io",
    version = "v1alpha1",
    kind = "SiteGatewayPoolAssignment",
    shortname = "sgpa",
    status = "BindingStatus",
    printcolumn = r#"{"name":"Sites","type":"string","jsonPath":".spec.sites"}"#,
    printcolumn = r#"{"name":"Pools","type":"string","jsonPath":".spec.gatewayPools"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SiteGatewayPoolAssignmentSpec {
    /// Sites whose cross-site traffic goes through the pools (at least one, no duplicates).
    #[schemars(
        length(min = 1, max = 64),
        inner(
            length(min = 1, max = 253),
            pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        )
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub sites: Vec<String>,
    /// Gateway pools serving those sites (at least one, no duplicates).
    #[schemars(
        length(min = 1, max = 64),
        inner(
            length(min = 1, max = 253),
            pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        )
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub gateway_pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_protocol: Option<TunnelProtocol>,
    #[serde(rename = "tunnelMTU", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 576, max = 9000))]
    pub tunnel_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_settings: Option<HealthCheckSettings>,
}

/// Declares two or more sites peers: a direct node mesh, or routing over existing L3.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "net.unbounded-cloud.io",
    version = "v1alpha1",
    kind = "SitePeering",
    shortname = "sp",
    status = "BindingStatus",
    printcolumn = r#"{"name":"Sites","type":"string","jsonPath":".spec.sites"}"#,
    printcolumn = r#"{"name":"Mesh","type":"boolean","jsonPath":".spec.meshNodes"}"#,
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.tunnelProtocol"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SitePeeringSpec {
    /// The peered sites (at least two, no duplicates).
    #[schemars(
        length(min = 2, max = 64),
        inner(
            length(min = 1, max = 253),
            pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        )
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub sites: Vec<String>,
    /// true (default): direct node-to-node tunnels; false: no overlay, route over existing L3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_nodes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_protocol: Option<TunnelProtocol>,
    #[serde(rename = "tunnelMTU", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 576, max = 9000))]
    pub tunnel_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_settings: Option<HealthCheckSettings>,
}

/// Gateway-to-gateway tunnels between pools.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "net.unbounded-cloud.io",
    version = "v1alpha1",
    kind = "GatewayPoolPeering",
    shortname = "gpp",
    status = "BindingStatus",
    printcolumn = r#"{"name":"Pools","type":"string","jsonPath":".spec.gatewayPools"}"#,
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.tunnelProtocol"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPoolPeeringSpec {
    /// The peered pools (at least two, no duplicates).
    #[schemars(
        length(min = 2, max = 64),
        inner(
            length(min = 1, max = 253),
            pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        )
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub gateway_pools: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_protocol: Option<TunnelProtocol>,
    #[serde(rename = "tunnelMTU", default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 576, max = 9000))]
    pub tunnel_mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_settings: Option<HealthCheckSettings>,
}

/// Status of a binding resource: whether every name it references exists.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BindingStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Conditions,
}
