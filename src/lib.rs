//! unbounded-net: Kubernetes CNI and multi-site pod router.
//!
//! - [`api`]: the v1alpha1 custom resources.
//! - [`core`]: the pure planner — snapshot in, desired state out; shared by the controller,
//!   the node agent, the simulator and the lab.
//! - [`cluster`]: the seam to the Kubernetes API (in-memory and kube-rs implementations).

pub mod api;
pub mod cluster;
pub mod controller;
pub mod core;
pub mod node;
