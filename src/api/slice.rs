//! SiteNodeSlice: the controller's published view of up to 500 nodes of one Site.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most nodes one slice carries (keeps each object far below etcd's size limit).
pub const MAX_NODES_PER_SLICE: usize = 500;

#[derive(
    CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema,
)]
#[kube(
    group = "net.unbounded-cloud.io",
    version = "v1alpha1",
    kind = "SiteNodeSlice",
    shortname = "sns",
    printcolumn = r#"{"name":"Site","type":"string","jsonPath":".spec.siteName"}"#,
    printcolumn = r#"{"name":"Index","type":"integer","jsonPath":".spec.sliceIndex"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SiteNodeSliceSpec {
    #[schemars(length(min = 1, max = 253))]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))]
    pub site_name: String,
    pub slice_index: u32,
    /// At most [`MAX_NODES_PER_SLICE`] nodes.
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub nodes: Vec<SliceNode>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SliceNode {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Base64 of a 32-byte Curve25519 public key (44 characters).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 44), pattern(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"))]
    pub wire_guard_public_key: String,
    #[serde(rename = "internalIPs", default)]
    #[schemars(length(max = 4), inner(length(max = 45)))]
    #[x_kube(validation = super::rules::ip_list("internalIPs"))]
    pub internal_ips: Vec<String>,
    /// Only published for nodes that have one (needed by meshed peerings over public links).
    #[serde(rename = "externalIPs", default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4), inner(length(max = 45)))]
    #[x_kube(validation = super::rules::ip_list("externalIPs"))]
    pub external_ips: Vec<String>,
    #[serde(rename = "podCIDRs", default)]
    #[schemars(length(max = 4), inner(length(max = 64)))]
    #[x_kube(validation = super::rules::cidr_list("podCIDRs"))]
    pub pod_cidrs: Vec<String>,
    /// MTU of the node's underlay interface, as its agent published it; absent until then
    /// (peers assume the cluster default).
    #[serde(
        rename = "underlayMTU",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 576, max = 65535))]
    pub underlay_mtu: Option<u32>,
}
