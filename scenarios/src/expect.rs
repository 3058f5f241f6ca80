//! Named traffic flows and the expectations a run is judged by.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use unbounded_net::api::TunnelProtocol;

use crate::values::{Members, TimeSpan};

/// Traffic between the test pods of two nodes, named so expectations can refer to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Flow {
    pub name: String,
    /// Node whose test pod sends.
    pub from: String,
    /// Node whose test pod receives.
    pub to: String,
    #[serde(default)]
    pub protocol: FlowProtocol,
    /// Destination port for TCP and UDP (default 5201).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Packets per second of a continuous stream from the start; absent: probes on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
}

fn default_port() -> u16 {
    5201
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowProtocol {
    #[default]
    Icmp,
    Tcp,
    Udp,
}

/// Encapsulation seen on the wire for one hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Encap {
    WireGuard,
    #[serde(rename = "GENEVE")]
    Geneve,
    #[serde(rename = "VXLAN")]
    Vxlan,
    #[serde(rename = "IPIP")]
    Ipip,
    /// Plain routed pod packets (no tunnel).
    None,
}

impl Encap {
    /// The API's protocol of the same name.
    pub fn protocol(self) -> TunnelProtocol {
        match self {
            Encap::WireGuard => TunnelProtocol::WireGuard,
            Encap::Geneve => TunnelProtocol::Geneve,
            Encap::Vxlan => TunnelProtocol::Vxlan,
            Encap::Ipip => TunnelProtocol::Ipip,
            Encap::None => TunnelProtocol::None,
        }
    }

    pub fn is_encrypted(self) -> bool {
        self == Encap::WireGuard
    }
}

/// One hop of a flow's path: the node the packet reaches next and how it travels there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Hop {
    /// The next node; a list means any one of them (ECMP over gateways).
    pub to: Members,
    pub encap: Encap,
}

/// Pod-to-pod reachability between every test pod of `from` and every test pod of `to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Connectivity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `all`, or node and site names (a site means all its nodes).
    #[serde(default)]
    pub from: Members,
    #[serde(default)]
    pub to: Members,
    /// Deadline, counted from the `after` event or the scenario's start.
    pub within: TimeSpan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// false: the pods must NOT reach each other (e.g. during a partition). Default true.
    #[serde(default = "yes")]
    pub reachable: bool,
}

fn yes() -> bool {
    true
}

/// A flow's path hop by hop, with the encapsulation of each hop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathExpectation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub flow: String,
    /// The path must be in place by then (from the `after` event or the start).
    pub within: TimeSpan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// From the flow's source node; the last hop reaches the flow's destination node.
    pub hops: Vec<Hop>,
}

/// A continuous flow's longest gap after a fault stays under `within`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Failover {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A flow with a `rate`.
    pub flow: String,
    /// The fault's timeline event name.
    pub after: String,
    pub within: TimeSpan,
}

/// A flow loses no packet across an event (e.g. an agent restart).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Uninterrupted {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A flow with a `rate`.
    pub flow: String,
    pub after: String,
}

/// No unencrypted pod packet crosses the listed internet links.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NoPlaintext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `all` (default) or internet link names.
    #[serde(default)]
    pub links: Members,
}

/// Don't-fragment packets of exactly `mtu` bytes pass along a flow's path; `mtu + 1` gets
/// "fragmentation needed".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathMtu {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub flow: String,
    pub mtu: u32,
    pub within: TimeSpan,
}

/// What a run must observe. Written as a one-key mapping: `- connectivity: {...}`.
#[derive(Clone, Debug, PartialEq)]
pub enum Expectation {
    Connectivity(Connectivity),
    Path(PathExpectation),
    Failover(Failover),
    Uninterrupted(Uninterrupted),
    NoPlaintext(NoPlaintext),
    PathMtu(PathMtu),
}

impl Expectation {
    /// The YAML key of this expectation.
    pub fn key(&self) -> &'static str {
        match self {
            Expectation::Connectivity(_) => "connectivity",
            Expectation::Path(_) => "path",
            Expectation::Failover(_) => "failover",
            Expectation::Uninterrupted(_) => "uninterrupted",
            Expectation::NoPlaintext(_) => "noPlaintext",
            Expectation::PathMtu(_) => "pathMtu",
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Expectation::Connectivity(e) => e.name.as_deref(),
            Expectation::Path(e) => e.name.as_deref(),
            Expectation::Failover(e) => e.name.as_deref(),
            Expectation::Uninterrupted(e) => e.name.as_deref(),
            Expectation::NoPlaintext(e) => e.name.as_deref(),
            Expectation::PathMtu(e) => e.name.as_deref(),
        }
    }

    /// The flow this expectation watches, if any.
    pub fn flow(&self) -> Option<&str> {
        match self {
            Expectation::Path(e) => Some(&e.flow),
            Expectation::Failover(e) => Some(&e.flow),
            Expectation::Uninterrupted(e) => Some(&e.flow),
            Expectation::PathMtu(e) => Some(&e.flow),
            Expectation::Connectivity(_) | Expectation::NoPlaintext(_) => None,
        }
    }

    /// The timeline event this expectation is anchored to, if any.
    pub fn after(&self) -> Option<&str> {
        match self {
            Expectation::Connectivity(e) => e.after.as_deref(),
            Expectation::Path(e) => e.after.as_deref(),
            Expectation::Failover(e) => Some(&e.after),
            Expectation::Uninterrupted(e) => Some(&e.after),
            Expectation::NoPlaintext(_) | Expectation::PathMtu(_) => None,
        }
    }

    /// A label for result tables: the name, or `key#N` with N the 1-based position.
    pub fn label(&self, index: usize) -> String {
        match self.name() {
            Some(name) => name.to_owned(),
            None => format!("{}#{}", self.key(), index + 1),
        }
    }
}

/// Every expectation key, in documentation order.
pub const EXPECTATION_KEYS: [&str; 6] = [
    "connectivity",
    "path",
    "failover",
    "uninterrupted",
    "noPlaintext",
    "pathMtu",
];

impl Serialize for Expectation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        match self {
            Expectation::Connectivity(e) => map.serialize_entry(self.key(), e)?,
            Expectation::Path(e) => map.serialize_entry(self.key(), e)?,
            Expectation::Failover(e) => map.serialize_entry(self.key(), e)?,
            Expectation::Uninterrupted(e) => map.serialize_entry(self.key(), e)?,
            Expectation::NoPlaintext(e) => map.serialize_entry(self.key(), e)?,
            Expectation::PathMtu(e) => map.serialize_entry(self.key(), e)?,
        }
        map.end()
    }
}

// serde_yaml 0.9 reads externally tagged enums only from YAML tags (`!path`); a one-key
// mapping reads better and is what users write, so the map is decoded by hand.
impl<'de> Deserialize<'de> for Expectation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Expectation, D::Error> {
        d.deserialize_map(ExpectationVisitor)
    }
}

struct ExpectationVisitor;

impl<'de> Visitor<'de> for ExpectationVisitor {
    type Value = Expectation;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an expectation such as `connectivity: {from: all, to: all, within: 30s}`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Expectation, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Err(de::Error::custom(format!(
                "empty expectation: write one of {}",
                EXPECTATION_KEYS.join(", ")
            )));
        };
        let expectation = match key.as_str() {
            "connectivity" => Expectation::Connectivity(map.next_value()?),
            "path" => Expectation::Path(map.next_value()?),
            "failover" => Expectation::Failover(map.next_value()?),
            "uninterrupted" => Expectation::Uninterrupted(map.next_value()?),
            "noPlaintext" => Expectation::NoPlaintext(map.next_value()?),
            "pathMtu" => Expectation::PathMtu(map.next_value()?),
            other => {
                return Err(de::Error::custom(format!(
                    "unknown expectation `{other}`: use one of {}",
                    EXPECTATION_KEYS.join(", ")
                )));
            }
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "one expectation per list entry: `{extra}` follows `{key}`; start a new `- {extra}:` entry"
            )));
        }
        Ok(expectation)
    }
}
