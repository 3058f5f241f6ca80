//! What is wrong with the input of gateway-pool, link and data-plane planning.
//!
//! Problems never stop planning: the object or link concerned is left out (or planned with
//! defaults) and the problem is returned so the controller can write a condition or an Event
//! on the object named in the message.

use super::health::HealthSettingError;

/// One problem found while planning; the message names the object and what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanProblem {
    #[error(
        "{object} references Site {site:?}, which does not exist: create it or remove the name"
    )]
    UnknownSite { object: String, site: String },
    #[error(
        "{object} references GatewayPool {pool:?}, which does not exist: create it or remove the name"
    )]
    UnknownPool { object: String, pool: String },
    #[error("{object} lists fewer than two distinct known {what}: it connects nothing")]
    TooFewMembers { object: String, what: &'static str },
    #[error(
        "GatewayPool/{pool}: nodeSelector is empty; add the label gateways carry, e.g. unbounded-cloud.io/unbounded-net-gateway: \"true\""
    )]
    EmptySelector { pool: String },
    #[error(
        "GatewayPool/{pool}: node {node} matches the selector but has not published a WireGuard key yet"
    )]
    GatewayWithoutKey { pool: String, node: String },
    #[error(
        "GatewayPool/{pool}: node {node} matches the selector but has no ExternalIP, which an External pool needs"
    )]
    GatewayWithoutExternalIp { pool: String, node: String },
    #[error("{object}: {field} entry {value:?} is not a CIDR")]
    BadCidr {
        object: String,
        field: &'static str,
        value: String,
    },
    #[error("{object}: healthCheckSettings: {error}; using the default")]
    BadHealthSettings {
        object: String,
        error: HealthSettingError,
    },
    #[error("{object}: tunnelMTU {value} is outside 576–9000; ignoring it")]
    TunnelMtuOutOfRange { object: String, value: u32 },
    #[error("node {node} belongs to no Site: add a Site whose nodeCidrs contain its InternalIP")]
    NodeWithoutSite { node: String },
    #[error(
        "link {node} -> {peer} needs WireGuard but {peer} has not published a WireGuard key yet"
    )]
    PeerWithoutKey { node: String, peer: String },
    #[error("link {node} -> {peer}: {reason}")]
    NoUnderlayPath {
        node: String,
        peer: String,
        reason: &'static str,
    },
    #[error(
        "node {node}: prefix {prefix} is claimed twice (kept the route via {kept}); check for overlapping pod CIDRs"
    )]
    RouteConflict {
        node: String,
        prefix: String,
        kept: String,
    },
}

/// Planning one node failed outright.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("node {0:?} is not in the snapshot")]
    UnknownNode(String),
}
