//! The scenario document: loading, parsing and the queries both runners use.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use unbounded_net::api::validation::validate_manifest;
use unbounded_net::api::{
    GatewayPool, GatewayPoolPeering, Site, SiteGatewayPoolAssignment, SitePeering,
};

use crate::error::{Diagnostic, Location, ScenarioError};
use crate::expect::{Encap, Expectation, Flow};
use crate::objects::{KubeObject, Manifest, parse_object};
use crate::position::PositionIndex;
use crate::timeline::TimedEvent;
use crate::topology::{Link, Node, PhysicalSite, Topology};
use crate::validate;

/// Which kernel a scenario needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// This machine's kernel: VXLAN and eBPF in the kernel, WireGuard in user space
    /// (boringtun); no GENEVE, IPIP or dummy devices.
    #[default]
    Host,
    /// Debian's cloud kernel in a qemu VM: kernel WireGuard, GENEVE, IPIP, VXLAN, dummy.
    Vm,
}

impl Kernel {
    /// Whether packets with this encapsulation can be produced under this kernel.
    pub fn carries(self, encap: Encap) -> bool {
        match self {
            Kernel::Vm => true,
            Kernel::Host => !matches!(encap, Encap::Geneve | Encap::Ipip),
        }
    }
}

/// The file as written, before references are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScenarioFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    kernel: Kernel,
    topology: Topology,
    #[serde(default)]
    objects: Vec<serde_json::Value>,
    #[serde(default)]
    flows: Vec<Flow>,
    #[serde(default)]
    timeline: Vec<TimedEvent>,
    #[serde(default)]
    expect: Vec<Expectation>,
}

/// A validated scenario: every name it uses refers to something it defines.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file stem (`expressroute`) or the name given to [`Scenario::parse`].
    pub name: String,
    /// Where it came from, as used in error messages.
    pub file: String,
    pub description: Option<String>,
    pub kernel: Kernel,
    pub topology: Topology,
    /// Kubernetes objects to apply at the start, in file order.
    pub objects: Vec<Manifest>,
    pub flows: Vec<Flow>,
    /// Events in time order.
    pub timeline: Vec<TimedEvent>,
    pub expect: Vec<Expectation>,
}

impl Scenario {
    /// Read and validate a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Scenario::parse_named(name, path.display().to_string(), &text)
    }

    /// Parse and validate scenario text; `name` stands for the file in messages.
    pub fn parse(name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse_named(name.to_owned(), name.to_owned(), text)
    }

    fn parse_named(name: String, file: String, text: &str) -> Result<Scenario, ScenarioError> {
        let index = PositionIndex::build(text);
        let raw: ScenarioFile = serde_yaml::from_str(text).map_err(|err| {
            let message = serde_message(&err);
            let location = err.location().map(|l| Location {
                line: l.line(),
                column: l.column(),
            });
            ScenarioError::Invalid(vec![Diagnostic {
                file: file.clone(),
                location: refine(&index, location, &message),
                message,
            }])
        })?;
        let mut problems = validate::Problems::default();
        let mut objects = Vec::with_capacity(raw.objects.len());
        for (i, value) in raw.objects.into_iter().enumerate() {
            let at = |path: &str| {
                if path.is_empty() {
                    format!("objects[{i}]")
                } else {
                    format!("objects[{i}].{path}")
                }
            };
            match parse_object(&value) {
                Ok(object) => {
                    // The CRD schema and CEL rules, as the API server would apply them.
                    for err in validate_manifest(&value) {
                        problems.at(
                            at(&err.path),
                            format!("{} `{}`: {err}", object.kind(), object.name()),
                        );
                    }
                    objects.push(Manifest { value, object });
                }
                Err(found) => {
                    for p in found {
                        problems.at(at(&p.path), p.message);
                    }
                }
            }
        }
        let scenario = Scenario {
            name,
            file: file.clone(),
            description: raw.description,
            kernel: raw.kernel,
            topology: raw.topology,
            objects,
            flows: raw.flows,
            timeline: raw.timeline,
            expect: raw.expect,
        };
        // Object references are only checked when every object parsed: a missing Site would
        // otherwise be reported twice.
        let objects_parsed = problems.is_empty();
        validate::scenario(&scenario, objects_parsed, &mut problems);
        if problems.is_empty() {
            return Ok(scenario);
        }
        Err(ScenarioError::Invalid(
            problems.into_diagnostics(&file, &index),
        ))
    }

    // ---- topology queries -------------------------------------------------------------

    pub fn site(&self, name: &str) -> Option<&PhysicalSite> {
        self.topology.site(name)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.topology.node(name)
    }

    pub fn link(&self, name: &str) -> Option<&Link> {
        self.topology.link(name)
    }

    /// Nodes of a site, in file order.
    pub fn nodes_in<'a>(&'a self, site: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.topology.nodes_in(site)
    }

    /// Gateway nodes of a site, in file order.
    pub fn gateways_in<'a>(&'a self, site: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.topology.gateways_in(site)
    }

    /// The underlay link between two sites: the private one if any, else the internet.
    pub fn link_between(&self, a: &str, b: &str) -> Option<&Link> {
        self.topology.link_between(a, b)
    }

    /// Site hosting the API server and the controller replicas.
    pub fn control_plane_site(&self) -> &str {
        self.topology.control_plane_site()
    }

    /// Nodes in the cluster at the start (`present: true`).
    pub fn initial_nodes(&self) -> impl Iterator<Item = &Node> {
        self.topology.nodes.iter().filter(|n| n.present)
    }

    /// Nodes whose Kubernetes labels match a selector.
    pub fn nodes_matching<'a>(
        &'a self,
        selector: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a Node> + 'a {
        self.topology
            .nodes
            .iter()
            .filter(move |n| n.matches_selector(selector))
    }

    // ---- objects, flows, events -------------------------------------------------------

    pub fn site_objects(&self) -> impl Iterator<Item = &Site> {
        self.objects.iter().filter_map(|m| match &m.object {
            KubeObject::Site(o) => Some(o),
            _ => None,
        })
    }

    pub fn gateway_pools(&self) -> impl Iterator<Item = &GatewayPool> {
        self.objects.iter().filter_map(|m| match &m.object {
            KubeObject::GatewayPool(o) => Some(o),
            _ => None,
        })
    }

    pub fn pool_assignments(&self) -> impl Iterator<Item = &SiteGatewayPoolAssignment> {
        self.objects.iter().filter_map(|m| match &m.object {
            KubeObject::SiteGatewayPoolAssignment(o) => Some(o),
            _ => None,
        })
    }

    pub fn site_peerings(&self) -> impl Iterator<Item = &SitePeering> {
        self.objects.iter().filter_map(|m| match &m.object {
            KubeObject::SitePeering(o) => Some(o),
            _ => None,
        })
    }

    pub fn pool_peerings(&self) -> impl Iterator<Item = &GatewayPoolPeering> {
        self.objects.iter().filter_map(|m| match &m.object {
            KubeObject::GatewayPoolPeering(o) => Some(o),
            _ => None,
        })
    }

    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// The timeline entry with this name.
    pub fn event(&self, name: &str) -> Option<&TimedEvent> {
        self.timeline
            .iter()
            .find(|e| e.name.as_deref() == Some(name))
    }

    /// When the last event happens (zero without a timeline).
    pub fn last_event_at(&self) -> crate::TimeSpan {
        self.timeline
            .last()
            .map(|e| e.at)
            .unwrap_or(crate::TimeSpan::ZERO)
    }
}

/// serde_yaml appends " at line L column C" to its messages; the location is printed first.
fn serde_message(err: &serde_yaml::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// serde_yaml points errors raised by a whole mapping or sequence (an unknown event key, a
/// bad list element) at the container's start. When the message is `path: …` and names a
/// `token` that is a key or a scalar inside that container, point at it instead.
fn refine(index: &PositionIndex, at: Option<Location>, message: &str) -> Option<Location> {
    let Some((path, rest)) = message.split_once(": ") else {
        return at;
    };
    if path.contains(' ') {
        return at;
    }
    let token = rest.split('`').nth(1).filter(|t| !t.is_empty());
    let Some(token) = token else { return at };
    let key = if path.is_empty() {
        token.to_owned()
    } else {
        format!("{path}.{token}")
    };
    index
        .locate_key(&key)
        .or_else(|| index.locate_scalar_below(path, token))
        .or(at)
}
