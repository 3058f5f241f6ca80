//! The physical lab: model, builder, and its derivation from a scenario.

pub mod build;
pub mod from_scenario;
pub mod model;

pub use model::{InternetNet, LabTopology, Netem, NodeNet, PrivateLinkNet, SiteNet};
