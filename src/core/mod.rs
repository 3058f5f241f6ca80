//! The pure planner: every decision as a function from an observed snapshot to desired state.
//! No I/O, no clocks, no randomness: the controller, the agent, the simulator and the lab all
//! call exactly this code.
//!
//! Data plane of one node (agent, simulator, lab):
//! 1. [`PlanIndex::new`] once per [`Snapshot`] (sites via [`assign_sites`], gateway pool
//!    membership and reachability, scope settings; problems in [`PlanIndex::problems`]);
//! 2. [`plan_node`] per node → [`NodePlan`]: the [`NodeDataplane`] (WireGuard peers, tunnels,
//!    routes with ECMP nexthops, probes, masquerade, CNI), its [`Link`]s and [`PlanProblem`]s;
//! 3. [`diff()`] between the applied and the new [`NodeDataplane`] → [`DataplaneOp`]s in a safe
//!    order, [`describe`] for the human-readable change list.
//!
//! [`pool_status`] gives the GatewayPool status the controller writes; [`plan_link`] and
//! [`scopes_between`] explain one link (governing scope, encapsulation, MTU, health).

pub mod alloc;
pub mod controller_plan;
pub mod dataplane;
pub mod diff;
#[cfg(test)]
mod diff_tests;
pub mod gateways;
pub mod health;
pub mod lease;
pub mod links;
#[cfg(test)]
mod links_tests;
pub mod mtu;
#[cfg(test)]
mod mtu_plan_tests;
pub mod node_plan;
pub mod plan_index;
pub mod plan_problem;
#[cfg(test)]
mod plan_proptest;
#[cfg(test)]
mod plan_tests;
pub mod site;
pub mod slice_view;
pub mod slices;
pub mod snapshot;
pub mod steering;
#[cfg(test)]
mod steering_tests;
pub mod synthetic;

pub use alloc::{AllocError, BlockPool, PodCidrAllocator, PoolProblem};
pub use controller_plan::{
    ControllerPlan, EventType, ObjectRef, PlannedCondition, PlannedEvent, PlannedSiteStatus,
    plan_controller,
};
pub use dataplane::{
    CniConfig, Encap, MasqueradeConfig, NextHop, NodeDataplane, ProbeTarget, Route, TunnelPeer,
    WireGuardConfig, WireGuardPeer,
};
pub use diff::{DataplaneOp, describe, diff};
pub use gateways::{Dest, GatewayPools, PoolView, Reach, pool_status};
pub use health::{HealthSettings, parse_duration, resolve_health};
pub use lease::{
    LeaseDecision, LeaseObservation, LeaseRecord, LeaseTiming, decide as decide_lease,
};
pub use links::{Link, Scope, plan_link, scopes_between};
pub use mtu::{DEFAULT_UNDERLAY_MTU, link_mtu, overhead};
pub use node_plan::{NodePlan, health_address, plan_node};
pub use plan_index::{PlanIndex, PlanSettings};
pub use plan_problem::{PlanError, PlanProblem};
pub use site::{InvalidNodeCidr, SiteAssignment, SiteIndex, SiteMatch, SiteOverlap, assign_sites};
pub use slice_view::node_facts_from_slices;
pub use slices::{SlicePlan, plan_slices, slice_name};
pub use snapshot::{NodeFacts, NodeProblem, Snapshot};
