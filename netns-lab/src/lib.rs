//! netns-lab: multi-site topologies from real network namespaces on one Linux machine, the
//! unbounded-net control plane and agents running over them, and checks executed for real.
//!
//! - [`topology`]: the physical lab (sites, routers, internet, interconnects) and its builder;
//! - [`registry`]: what a lab created, so `down`, errors and Ctrl-C remove exactly that;
//! - [`pods`]: test pods attached by the real CNI plugins;
//! - [`doctor`]: what this machine can do.

pub mod capture;
pub mod checks;
pub mod cmd;
pub mod control;
pub mod doctor;
pub mod events;
pub mod judge;
pub mod lab;
pub mod netns;
pub mod nodes;
pub mod pods;
pub mod progress;
pub mod registry;
pub mod report;
pub mod signals;
pub mod tcp_flow;
pub mod timeline;
pub mod topology;
pub mod traffic;
pub mod vm;
