//! unbounded-net-controller: the leader-elected control plane shell.
//!
//! Reflectors keep an [`store::Observed`] copy of Nodes and the six CRDs; while this replica
//! holds the Lease, every change (debounced) runs one [`reconcile::Reconciler::pass`]. All I/O
//! goes through the [`Cluster`] seam, so the simulator runs this same loop in memory; the
//! wall clock is read only through [`Clock`] (condition and Lease timestamps).

pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod status;
pub mod store;
pub mod writes;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cluster::Cluster;
use crate::core::PlanSettings;
use crate::core::lease::LeaseTiming;
use events::EventRecorder;
use leader::LeaderElector;
use metrics::Metrics;
use reconcile::Reconciler;
use store::Store;
use writes::Writer;

/// Wall-clock time for timestamps written into objects (never for decisions).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// How one controller replica runs.
#[derive(Clone, Debug)]
pub struct ControllerSettings {
    /// This replica's identity in the Lease (the pod name in production).
    pub identity: String,
    pub lease_namespace: String,
    pub lease_name: String,
    /// A standby takes over this long after the leader stops renewing.
    pub lease_duration: Duration,
    /// How often the leader renews (and a standby looks).
    pub renew_interval: Duration,
    /// Namespace that receives Events.
    pub event_namespace: String,
    /// Changes arriving within this window are handled by one pass.
    pub debounce: Duration,
    /// A pass runs at least this often even without changes (repairs missed writes).
    pub resync: Duration,
    pub plan: PlanSettings,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            identity: "unbounded-net-controller".into(),
            lease_namespace: "unbounded-net".into(),
            lease_name: "unbounded-net-controller".into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            event_namespace: "default".into(),
            debounce: Duration::from_millis(200),
            resync: Duration::from_secs(60),
            plan: PlanSettings::default(),
        }
    }
}

/// A running controller: its store and metrics (for `/readyz` and `/metrics`).
pub struct Controller<C> {
    cluster: C,
    settings: ControllerSettings,
    clock: Arc<dyn Clock>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}

impl<C: Cluster> Controller<C> {
    pub fn new(cluster: C, settings: ControllerSettings, clock: Arc<dyn Clock>) -> Self {
        Controller {
            cluster,
            settings,
            clock,
            store: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// Runs until `shutdown` turns true, then releases the Lease.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Controller {
            cluster,
            settings,
            clock,
            store,
            metrics,
        } = self;
        let mut tasks = tokio::task::JoinSet::new();
        store::spawn_reflectors(&cluster, &store, true, &mut tasks);

        let (leading_tx, mut leading) = watch::channel(false);
        let mut elector = LeaderElector::new(
            cluster.clone(),
            &settings.lease_namespace,
            &settings.lease_name,
            &settings.identity,
            LeaseTiming {
                lease_duration: settings.lease_duration,
                renew_deadline: settings.lease_duration.mul_f32(2.0 / 3.0),
                retry_period: settings.renew_interval,
            },
            clock.clone(),
        );
        let renew = settings.renew_interval;
        // Leadership is given up when renewals keep failing for most of the lease duration,
        // before a standby may take over: a deposed leader never writes alongside a new one.
        let renew_deadline = settings.lease_duration.mul_f32(2.0 / 3.0);
        let election_metrics = metrics.clone();
        let mut election_shutdown = shutdown.clone();
        let mut election = AbortOnDrop(tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            loop {
                let held = match elector.step().await {
                    Ok(h) => {
                        last_ok = tokio::time::Instant::now();
                        h
                    }
                    Err(e) => {
                        warn!(error = %e, "lease check failed");
                        *leading_tx.borrow() && last_ok.elapsed() < renew_deadline
                    }
                };
                election_metrics.is_leader.set(i64::from(held));
                leading_tx.send_if_modified(|v| std::mem::replace(v, held) != held);
                tokio::select! {
                    _ = tokio::time::sleep(renew) => {}
                    _ = election_shutdown.changed() => break,
                }
            }
            leading_tx.send_replace(false);
            elector.release().await;
        }));

        let reconciler = Reconciler {
            writer: Writer {
                cluster: cluster.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
            },
            events: EventRecorder::new(
                cluster.clone(),
                &settings.event_namespace,
                clock.clone(),
                metrics.clone(),
            ),
            clock: clock.clone(),
            settings: settings.plan,
        };
        let mut was_leader = false;
        loop {
            tokio::select! {
                _ = store.changed() => {}
                _ = leading.changed() => {}
                _ = tokio::time::sleep(settings.resync) => {}
                _ = shutdown.changed() => break,
            }
            tokio::time::sleep(settings.debounce).await;
            let is_leader = *leading.borrow();
            if !is_leader {
                was_leader = false;
                continue;
            }
            if !store.is_synced() {
                continue;
            }
            if !was_leader {
                // A new leader trusts only what the API shows now: the allocator is rebuilt
                // from a fresh list of every Node's podCIDRs, not from a watch that may lag.
                match cluster.list::<Node>(None).await {
                    Ok(list) => store.with(|o| {
                        o.nodes = list
                            .items
                            .into_iter()
                            .filter_map(|n| Some((n.metadata.name.clone()?, n)))
                            .collect();
                    }),
                    Err(e) => {
                        warn!(error = %e, "fresh node list failed; not reconciling yet");
                        continue;
                    }
                }
                info!(identity = %settings.identity, "leading: reconciling");
                was_leader = true;
            }
            let started = tokio::time::Instant::now();
            let report = reconciler.pass().await;
            metrics.passes.inc();
            metrics
                .last_pass_millis
                .set(started.elapsed().as_millis() as i64);
            metrics.nodes.set(report.nodes as i64);
            metrics
                .nodes_without_pod_cidrs
                .set(report.unallocated as i64);
            info!(
                nodes = report.nodes,
                allocated = report.allocated,
                unallocated = report.unallocated,
                labelled = report.labelled,
                slices_written = report.slices_written,
                errors = report.errors,
                millis = started.elapsed().as_millis() as u64,
                "reconcile pass"
            );
            if report.errors > 0 {
                // Something failed (and was logged): come back soon rather than at resync.
                tokio::time::sleep(Duration::from_secs(1)).await;
                store.notify();
            } else if report.replan {
                // A Node write raced another writer: plan again from what the API now shows.
                store.notify();
            }
        }
        let _ = (&mut election.0).await;
        tasks.abort_all();
    }
}

/// Aborts the task when dropped: if the controller future itself is dropped (a crash in the
/// simulator, a test killing a replica), its Lease renewals stop with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
