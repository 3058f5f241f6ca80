//! What the checker can see of the simulated world, written by the hosts as they act.
//!
//! Hosts never read each other's entries (they talk only over turmoil's network); the run loop
//! reads everything here after every step to judge expectations and invariants. The kernel
//! state of a node lives here because it outlives the agent process (an agent restart adopts
//! it) but not the machine (a crash wipes it).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use unbounded_net::core::NodeDataplane;
use unbounded_net::node::KernelState;

/// Shared handle to the observatory.
pub type Shared = Rc<RefCell<Observatory>>;

/// One node as the checker sees it.
#[derive(Clone, Debug, Default)]
pub struct NodeView {
    /// The machine is running (not crashed, not left).
    pub up: bool,
    /// The plan the agent last applied, and the peers it pulled from ECMP when it did.
    pub applied: Option<NodeDataplane>,
    pub pulled: BTreeSet<String>,
    /// Peers the agent's prober has declared down, with the virtual time it did so.
    pub declared_down: BTreeMap<String, Duration>,
    /// The recording dataplane's kernel state (survives agent restarts, not machine crashes).
    pub kernel: KernelState,
    /// Detection window per probed peer (for the stale-route invariant).
    pub detect_window: BTreeMap<String, Duration>,
    /// Agent passes that changed the kernel.
    pub applies: u64,
}

/// Everything the checker reads.
#[derive(Default)]
pub struct Observatory {
    pub nodes: BTreeMap<String, NodeView>,
    /// Controller replica → virtual time until which it may act as leader (its lease deadline).
    pub acting_leader: BTreeMap<String, Duration>,
    /// Production controller replicas' metrics (their `is_leader` gauge).
    pub leader_gauges:
        BTreeMap<String, std::sync::Arc<unbounded_net::controller::metrics::Metrics>>,
    /// Human-readable log lines from hosts (`host: message`), drained into the trace.
    pub log: Vec<String>,
    /// Bug switches for tests (see [`crate::bugs::Bugs`]).
    pub bugs: crate::bugs::Bugs,
}

impl Observatory {
    /// Controller replicas acting as leader at `now` (production gauge or sim lease deadline).
    pub fn leaders(&self, now: Duration) -> Vec<String> {
        let mut out: Vec<String> = self
            .acting_leader
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(n, _)| n.clone())
            .collect();
        out.extend(
            self.leader_gauges
                .iter()
                .filter(|(_, m)| m.is_leader.get() > 0)
                .map(|(n, _)| n.clone()),
        );
        out.sort();
        out.dedup();
        out
    }

    pub fn shared() -> Shared {
        Rc::new(RefCell::new(Observatory::default()))
    }

    pub fn node_mut(&mut self, name: &str) -> &mut NodeView {
        self.nodes.entry(name.to_string()).or_default()
    }

    pub fn note(&mut self, host: &str, message: impl AsRef<str>) {
        self.log.push(format!("{host}: {}", message.as_ref()));
    }
}
