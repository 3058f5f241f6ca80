//! The simulated API server: the in-memory cluster store served over turmoil TCP, and the
//! [`SimCluster`] client the simulated controller and agents use as their cluster seam.

pub mod client;
pub mod server;
pub mod wire;

pub use client::SimCluster;
pub use server::{API_PORT, WriteLedger, serve};
