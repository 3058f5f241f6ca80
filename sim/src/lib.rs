//! Deterministic simulator of unbounded-net: the API server, two controller replicas and one
//! agent per node as turmoil hosts, checked continuously against the scenario's expectations
//! and the system's invariants in virtual time.

pub mod agent;
pub mod api;
pub mod bugs;
pub mod controller;
pub mod controller_host;
pub mod disturb;
pub mod expect;
pub mod faults;
pub mod forwarding;
pub mod generate;
pub mod informer;
pub mod invariants;
pub mod observe;
pub mod reach;
pub mod report;
pub mod rng;
pub mod trace;
pub mod world;
