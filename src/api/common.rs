//! Settings shared by several resources: tunnel protocol, MTU, health checks, conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Encapsulation used on a link. Unset means `Auto`.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    JsonSchema,
    Default,
)]
pub enum TunnelProtocol {
    /// Encrypted; 80 bytes of overhead over IPv6 underlay (60 over IPv4).
    WireGuard,
    /// 50 bytes over IPv4 (70 over IPv6) with no options.
    #[serde(rename = "GENEVE")]
    Geneve,
    /// 50 bytes over IPv4 (70 over IPv6).
    #[serde(rename = "VXLAN")]
    Vxlan,
    /// 20 bytes (IPv4-in-IPv4).
    #[serde(rename = "IPIP")]
    Ipip,
    /// No encapsulation: route over the existing L3 path.
    None,
    /// WireGuard on links that use external IPs, GENEVE on links that use internal IPs.
    #[default]
    Auto,
}

/// UDP health probing of a tunnel peer (BFD-like).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckSettings {
    /// Probe this link at all (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How often probes are sent, as a duration such as `100ms` or `1s` (10ms–1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = super::rules::interval_format("transmitInterval"),
        validation = super::rules::interval_bounds("transmitInterval")
    )]
    pub transmit_interval: Option<String>,
    /// Expected interval between received probes, as a duration (10ms–1m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = super::rules::interval_format("receiveInterval"),
        validation = super::rules::interval_bounds("receiveInterval")
    )]
    pub receive_interval: Option<String>,
    /// Missed receive intervals before the peer is declared down (1–255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 255))]
    pub detect_multiplier: Option<u32>,
}

/// Standard Kubernetes conditions list, used in status blocks.
pub type Conditions = Vec<Condition>;
