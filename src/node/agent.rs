//! The agent's reconcile loop: whenever the plan or the peers' health changes, bring the
//! dataplane in line. Fail static: with no plan (the API server has not answered yet, or is
//! away) nothing is touched, and a failed pass leaves the kernel as it is and retries.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{error, warn};

use super::dataplane::{Dataplane, ReconcileReport, Reconciler};
use crate::core::dataplane::NodeDataplane;

/// Delay before retrying a pass that failed as a whole.
pub const RETRY_DELAY: Duration = Duration::from_secs(2);

/// Runs until both watch senders are dropped. `on_pass` sees every completed pass (metrics).
pub async fn run_reconcile_loop<D: Dataplane>(
    mut reconciler: Reconciler<D>,
    mut plan: watch::Receiver<Option<NodeDataplane>>,
    mut unhealthy: watch::Receiver<BTreeSet<String>>,
    mut on_pass: impl FnMut(&ReconcileReport, Duration) + Send,
) {
    loop {
        let current_plan = plan.borrow_and_update().clone();
        let current_health = unhealthy.borrow_and_update().clone();
        let mut retry = false;
        if let Some(p) = current_plan {
            let started = std::time::Instant::now();
            match reconciler.reconcile(&p, &current_health).await {
                Ok(report) => {
                    retry = !report.apply.failures.is_empty();
                    on_pass(&report, started.elapsed());
                }
                Err(e) => {
                    error!(error = %e, "reconcile failed; keeping the kernel as it is");
                    reconciler.invalidate();
                    retry = true;
                }
            }
        }
        if retry {
            tokio::select! {
                _ = tokio::time::sleep(RETRY_DELAY) => {}
                r = plan.changed() => if r.is_err() { return },
                r = unhealthy.changed() => if r.is_err() { return },
            }
            continue;
        }
        tokio::select! {
            r = plan.changed() => if r.is_err() {
                warn!("plan source closed; reconcile loop stops");
                return;
            },
            r = unhealthy.changed() => if r.is_err() {
                warn!("health source closed; reconcile loop stops");
                return;
            },
        }
    }
}
