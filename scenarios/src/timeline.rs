//! The timeline: faults and changes applied at offsets from the scenario's start.
//!
//! Each entry is a mapping with `at`, an optional `name`, and exactly one event key:
//!
//! ```yaml
//! - at: 5s
//!   name: kill-gw
//!   gatewayCrash: gw-a1
//! ```

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::values::TimeSpan;

/// One timeline entry.
#[derive(Clone, Debug, PartialEq)]
pub struct TimedEvent {
    /// Offset from the scenario's start.
    pub at: TimeSpan,
    /// Optional name, referenced by expectations (`after:`) and by `partitionHeal`.
    pub name: Option<String>,
    pub event: Event,
}

/// What happens.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A node with `present: false` joins the cluster (its machine boots, the agent starts).
    NodeJoin(String),
    /// A node is drained and deleted from the cluster; its machine goes away.
    NodeLeave(String),
    /// A gateway's machine dies abruptly (no graceful shutdown).
    GatewayCrash(GatewayTarget),
    /// A crashed gateway comes back.
    GatewayRestart(GatewayTarget),
    /// The node agent process restarts; the machine and its kernel state stay.
    AgentRestart(String),
    /// A link stops carrying any packets.
    LinkCut(String),
    /// A cut link carries packets again.
    LinkHeal(String),
    /// Groups of sites or nodes that cannot reach each other (API server included).
    Partition(Vec<Vec<String>>),
    /// Lift the partition made by the named event.
    PartitionHeal(String),
    /// The leading controller replica dies; the other must take over the Lease.
    ControllerLeaderLoss,
}

/// Which gateway a crash or restart acts on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GatewayTarget {
    /// This gateway node (`gatewayCrash: gw-a1`).
    Node(String),
    /// Whichever gateway carries the named flow at that instant, so a failover is really
    /// exercised (`gatewayCrash: {carrying: stream}`); ties go to the first in file order.
    Carrying(String),
    /// The gateway that the named earlier crash event took down (`gatewayRestart:
    /// {crashedBy: kill-gw}`).
    CrashedBy(String),
}

impl Serialize for GatewayTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            GatewayTarget::Node(node) => s.serialize_str(node),
            GatewayTarget::Carrying(flow) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("carrying", flow)?;
                map.end()
            }
            GatewayTarget::CrashedBy(event) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("crashedBy", event)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for GatewayTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GatewayTarget, D::Error> {
        struct TargetVisitor;
        impl<'de> Visitor<'de> for TargetVisitor {
            type Value = GatewayTarget;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a gateway node name, `{carrying: FLOW}` or `{crashedBy: EVENT}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GatewayTarget, E> {
                Ok(GatewayTarget::Node(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GatewayTarget, A::Error> {
                let target = match map.next_key::<String>()?.as_deref() {
                    Some("carrying") => GatewayTarget::Carrying(map.next_value()?),
                    Some("crashedBy") => GatewayTarget::CrashedBy(map.next_value()?),
                    Some(other) => {
                        return Err(de::Error::custom(format!(
                            "unknown gateway selector `{other}`: use a node name, `carrying: FLOW` or `crashedBy: EVENT`"
                        )));
                    }
                    None => {
                        return Err(de::Error::custom(
                            "empty gateway selector: name a gateway node",
                        ));
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "a gateway selector has one key: remove `{extra}`"
                    )));
                }
                Ok(target)
            }
        }
        d.deserialize_any(TargetVisitor)
    }
}

/// Every event key, in documentation order.
pub const EVENT_KEYS: [&str; 10] = [
    "nodeJoin",
    "nodeLeave",
    "gatewayCrash",
    "gatewayRestart",
    "agentRestart",
    "linkCut",
    "linkHeal",
    "partition",
    "partitionHeal",
    "controllerLeaderLoss",
];

impl Event {
    /// The YAML key naming this event.
    pub fn key(&self) -> &'static str {
        match self {
            Event::NodeJoin(_) => "nodeJoin",
            Event::NodeLeave(_) => "nodeLeave",
            Event::GatewayCrash(_) => "gatewayCrash",
            Event::GatewayRestart(_) => "gatewayRestart",
            Event::AgentRestart(_) => "agentRestart",
            Event::LinkCut(_) => "linkCut",
            Event::LinkHeal(_) => "linkHeal",
            Event::Partition(_) => "partition",
            Event::PartitionHeal(_) => "partitionHeal",
            Event::ControllerLeaderLoss => "controllerLeaderLoss",
        }
    }

    /// The node this event acts on, if it acts on one.
    pub fn node(&self) -> Option<&str> {
        match self {
            Event::NodeJoin(n) | Event::NodeLeave(n) | Event::AgentRestart(n) => Some(n),
            Event::GatewayCrash(GatewayTarget::Node(n))
            | Event::GatewayRestart(GatewayTarget::Node(n)) => Some(n),
            _ => None,
        }
    }

    /// True for events that take a path away (what a failover expectation measures).
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Event::NodeLeave(_)
                | Event::GatewayCrash(_)
                | Event::LinkCut(_)
                | Event::Partition(_)
                | Event::ControllerLeaderLoss
                | Event::AgentRestart(_)
        )
    }
}

impl TimedEvent {
    /// A label for result tables: the name, or `key@at`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("{}@{}", self.event.key(), self.at),
        }
    }
}

impl Serialize for TimedEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("at", &self.at)?;
        if let Some(name) = &self.name {
            map.serialize_entry("name", name)?;
        }
        let key = self.event.key();
        match &self.event {
            Event::GatewayCrash(target) | Event::GatewayRestart(target) => {
                map.serialize_entry(key, target)?
            }
            Event::NodeJoin(v)
            | Event::NodeLeave(v)
            | Event::AgentRestart(v)
            | Event::LinkCut(v)
            | Event::LinkHeal(v)
            | Event::PartitionHeal(v) => map.serialize_entry(key, v)?,
            Event::Partition(groups) => map.serialize_entry(key, groups)?,
            Event::ControllerLeaderLoss => {
                map.serialize_entry(key, &serde_json::Map::new())?;
            }
        }
        map.end()
    }
}

/// The empty payload of `controllerLeaderLoss` (`{}` or nothing).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

impl<'de> Deserialize<'de> for TimedEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TimedEvent, D::Error> {
        d.deserialize_map(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = TimedEvent;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a timeline entry: `at`, an optional `name`, and one event such as `gatewayCrash: NODE`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TimedEvent, A::Error> {
        let mut at = None;
        let mut name = None;
        let mut event: Option<Event> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == "at" {
                at = Some(map.next_value::<TimeSpan>()?);
                continue;
            }
            if key == "name" {
                name = Some(map.next_value::<String>()?);
                continue;
            }
            if let Some(first) = &event {
                return Err(de::Error::custom(format!(
                    "one event per timeline entry: `{key}` follows `{}`; start a new `- at:` entry for it",
                    first.key()
                )));
            }
            event = Some(match key.as_str() {
                "nodeJoin" => Event::NodeJoin(map.next_value()?),
                "nodeLeave" => Event::NodeLeave(map.next_value()?),
                "gatewayCrash" => Event::GatewayCrash(map.next_value()?),
                "gatewayRestart" => Event::GatewayRestart(map.next_value()?),
                "agentRestart" => Event::AgentRestart(map.next_value()?),
                "linkCut" => Event::LinkCut(map.next_value()?),
                "linkHeal" => Event::LinkHeal(map.next_value()?),
                "partition" => Event::Partition(map.next_value()?),
                "partitionHeal" => Event::PartitionHeal(map.next_value()?),
                "controllerLeaderLoss" => {
                    let _: Option<NoFields> = map.next_value()?;
                    Event::ControllerLeaderLoss
                }
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown timeline key `{other}`: use `at`, `name` or one of {}",
                        EVENT_KEYS.join(", ")
                    )));
                }
            });
        }
        let at = at.ok_or_else(|| {
            de::Error::custom("timeline entry has no `at`: add an offset such as `at: 5s`")
        })?;
        let event = event.ok_or_else(|| {
            de::Error::custom(format!(
                "timeline entry has no event: add one of {}",
                EVENT_KEYS.join(", ")
            ))
        })?;
        Ok(TimedEvent { at, name, event })
    }
}
