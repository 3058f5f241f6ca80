//! The production controller (`unbounded_net::controller::Controller`: reflectors, Lease
//! election via `core::lease`, reconcile passes) as a turmoil host, over [`SimCluster`] and a
//! virtual clock.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use unbounded_net::controller::{Clock, Controller, ControllerSettings};

use crate::api::SimCluster;
use crate::observe::Shared;

/// Virtual wall clock: a fixed epoch plus turmoil's elapsed time (never the host's clock).
struct VirtualClock;

/// 2026-01-01T00:00:00Z, the simulated cluster's epoch.
const EPOCH_SECS: i64 = 1_767_225_600;

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        let t = turmoil::sim_elapsed().unwrap_or_default();
        Timestamp::new(EPOCH_SECS + t.as_secs() as i64, t.subsec_nanos() as i32)
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// One controller replica's software. Its leadership gauge is shared with the checker.
pub async fn run(me: String, obs: Shared) -> turmoil::Result {
    let settings = ControllerSettings {
        identity: me.clone(),
        ..ControllerSettings::default()
    };
    let controller = Controller::new(SimCluster::new("api"), settings, Arc::new(VirtualClock));
    obs.borrow_mut()
        .leader_gauges
        .insert(me.clone(), controller.metrics.clone());
    obs.borrow_mut().note(&me, "controller started");
    // Never shut down: a crash is how a replica stops in the simulator.
    let (_keep, shutdown) = watch::channel(false);
    controller.run(shutdown).await;
    Ok(())
}
