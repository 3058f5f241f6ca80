//! SiteNodeSlice: the controller's published view of up to 500 nodes of one Site.

use kube::CustomResource;
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
    pub site_name: String,
    pub slice_index: u32,
    #[serde(default)]
    pub nodes: Vec<SliceNode>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SliceNode {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub wire_guard_public_key: String,
    #[serde(rename = "internalIPs", default)]
    pub internal_ips: Vec<String>,
    /// Only published for nodes that have one (needed by meshed peerings over public links).
    #[serde(rename = "externalIPs", default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    #[serde(rename = "podCIDRs", default)]
    pub pod_cidrs: Vec<String>,
}
