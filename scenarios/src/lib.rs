//! The scenario format: one YAML file per situation, run unchanged by the simulator and the
//! netns lab. A scenario holds the physical topology, the Kubernetes objects to apply, a
//! timeline of events and the expectations a run is judged by. See `scenarios/README.md`.
//!
//! ```no_run
//! let scenario = unbounded_scenario::Scenario::load("scenarios/expressroute.yaml")?;
//! for node in scenario.nodes_in("site-azure") {
//!     println!("{} {}", node.name, node.internal_ip);
//! }
//! # Ok::<(), unbounded_scenario::ScenarioError>(())
//! ```

mod error;
mod expect;
mod objects;
mod position;
mod scenario;
mod timeline;
mod topology;
mod validate;
mod values;

pub use error::{Diagnostic, Location, ScenarioError};
pub use expect::{
    Connectivity, EXPECTATION_KEYS, Encap, Expectation, Failover, Flow, FlowProtocol, Hop,
    NoPlaintext, PathExpectation, PathMtu, Uninterrupted,
};
pub use objects::{API_VERSION, KubeObject, Manifest};
pub use scenario::{Kernel, Scenario};
pub use timeline::{EVENT_KEYS, Event, GatewayTarget, TimedEvent};
pub use topology::{Link, LinkKind, Node, PhysicalSite, Role, Topology};
pub use values::{Cidr, Members, TimeSpan, TimeSpanError};
