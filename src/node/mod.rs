//! The node agent as a library: everything `unbounded-net-node` does, behind one seam per
//! outside system so the simulator and the lab run the same code.
//!
//! - [`render`] + [`kernel`]: the planner's [`NodeDataplane`](crate::core::NodeDataplane) as
//!   kernel objects, and the diff between two kernel states (pure).
//! - [`dataplane`]: the seam ([`Dataplane`]), the in-memory [`RecordingDataplane`], and the
//!   [`Reconciler`] that applies a plan as a diff against what the kernel holds.
//! - [`netlink`]: the rtnetlink implementation of the seam.
//! - [`probe`]: health probe wire format, pure state machine, UDP shells.
//! - [`cni`], [`masquerade`]: the conflist writer and the nftables table (masquerade, MSS
//!   clamping).
//! - [`underlay_mtu`]: this node's underlay MTU from its own routing table.

pub mod agent;
pub mod cni;
pub mod dataplane;
pub mod ebpf;
pub mod kernel;
pub mod masquerade;
pub mod metrics;
pub mod netlink;
pub mod probe;
pub mod render;
pub mod shell;
pub mod underlay_mtu;
pub mod wireguard;

pub use dataplane::{Dataplane, Reconciler, RecordingDataplane};
pub use kernel::{KernelOp, KernelState};
