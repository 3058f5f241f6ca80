//! The pure planner: every decision as a function from an observed snapshot to desired state.
//! No I/O, no clocks, no randomness: the controller, the agent, the simulator and the lab all
//! call exactly this code.

pub mod dataplane;
pub mod diff;
pub mod snapshot;

pub use dataplane::{
    CniConfig, Encap, MasqueradeConfig, NextHop, NodeDataplane, ProbeTarget, Route, TunnelPeer,
    WireGuardConfig, WireGuardPeer,
};
pub use diff::{DataplaneOp, describe, diff};
pub use snapshot::{NodeFacts, NodeProblem, Snapshot};
