//! The dataplane seam: read back what the agent owns, apply kernel operations. The netlink
//! implementation programs a real kernel; [`RecordingDataplane`] keeps the state in memory
//! and records every operation, for the simulator and unit tests.

use std::collections::BTreeSet;
use std::future::Future;

use tracing::{info, warn};

use super::kernel::{self, KernelOp, KernelState};
use super::render::{self, RenderProblem};
use crate::core::dataplane::NodeDataplane;

/// Failure of the dataplane as a whole (one failed operation is an [`OpFailure`] instead).
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    #[error("cannot read {what} from the kernel: {message}")]
    Read { what: &'static str, message: String },
    #[error("cannot write {path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up pod bridge {bridge}: {message}")]
    Bridge { bridge: String, message: String },
}

/// One operation the kernel refused; the others were still applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpFailure {
    pub op: KernelOp,
    pub message: String,
}

/// What one apply did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub applied: usize,
    /// Netlink requests sent (the recording dataplane counts one per op).
    pub messages: usize,
    pub failures: Vec<OpFailure>,
}

/// One seam per outside system: this is the one for the kernel's routing and link tables.
pub trait Dataplane {
    /// Everything the agent owns right now (tunnel devices by name prefix, routes by
    /// protocol); nothing else is returned, so nothing else is ever changed.
    fn read(&mut self) -> impl Future<Output = Result<KernelState, DataplaneError>> + Send;
    /// Applies `ops` in order, carrying on past individual failures.
    fn apply(
        &mut self,
        ops: &[KernelOp],
    ) -> impl Future<Output = Result<ApplyReport, DataplaneError>> + Send;
    /// Rewrites underlay gateways that are not on a connected subnet (a `None` route via an
    /// internal IP in another site) to the gateway the kernel itself would use to reach them,
    /// so the route is accepted and follows the underlay. Implementations without an underlay
    /// leave `state` as it is.
    fn resolve_gateways(&mut self, state: &mut KernelState) -> impl Future<Output = ()> + Send {
        let _ = state;
        async {}
    }
    /// Forgets anything cached about the kernel (the next pass looks again).
    fn forget(&mut self) {}
}

/// In-memory dataplane that records every operation.
#[derive(Clone, Debug, Default)]
pub struct RecordingDataplane {
    pub state: KernelState,
    pub log: Vec<KernelOp>,
}

impl Dataplane for RecordingDataplane {
    async fn read(&mut self) -> Result<KernelState, DataplaneError> {
        Ok(self.state.clone())
    }

    async fn apply(&mut self, ops: &[KernelOp]) -> Result<ApplyReport, DataplaneError> {
        kernel::apply_to(&mut self.state, ops);
        self.log.extend_from_slice(ops);
        Ok(ApplyReport {
            applied: ops.len(),
            messages: ops.len(),
            failures: Vec::new(),
        })
    }
}

/// Outcome of one reconcile pass.
#[derive(Clone, Debug, Default)]
pub struct ReconcileReport {
    pub ops: Vec<KernelOp>,
    pub apply: ApplyReport,
    pub problems: Vec<RenderProblem>,
}

/// Drives a [`Dataplane`] toward a plan: renders, diffs against what the kernel holds, applies
/// the difference. The first pass reads the kernel, so a restarted agent adopts what is there.
#[derive(Debug)]
pub struct Reconciler<D> {
    dataplane: D,
    wireguard_device: String,
    known: Option<KernelState>,
}

impl<D: Dataplane> Reconciler<D> {
    pub fn new(dataplane: D, wireguard_device: impl Into<String>) -> Self {
        Reconciler {
            dataplane,
            wireguard_device: wireguard_device.into(),
            known: None,
        }
    }

    pub fn dataplane(&self) -> &D {
        &self.dataplane
    }

    pub fn dataplane_mut(&mut self) -> &mut D {
        &mut self.dataplane
    }

    /// Makes the kernel match `plan` with `unhealthy` peers pulled from ECMP.
    #[tracing::instrument(skip_all, fields(node = %plan.node))]
    pub async fn reconcile(
        &mut self,
        plan: &NodeDataplane,
        unhealthy: &BTreeSet<String>,
    ) -> Result<ReconcileReport, DataplaneError> {
        let (mut desired, problems) = render::render(plan, &self.wireguard_device, unhealthy);
        self.dataplane.resolve_gateways(&mut desired).await;
        for p in &problems {
            warn!(problem = %p, "skipped part of the plan");
        }
        let current = match self.known.take() {
            Some(k) => k,
            None => self.dataplane.read().await?,
        };
        let ops = kernel::diff(&current, &desired);
        let apply = self.dataplane.apply(&ops).await?;
        if apply.failures.is_empty() {
            self.known = Some(desired);
        } else {
            self.dataplane.forget();
        }
        // After a failure the next pass re-reads the kernel instead of trusting the plan.
        for f in &apply.failures {
            warn!(op = %f.op, error = %f.message, "kernel refused an operation");
        }
        if !ops.is_empty() {
            info!(
                ops = ops.len(),
                messages = apply.messages,
                "dataplane updated"
            );
        }
        Ok(ReconcileReport {
            ops,
            apply,
            problems,
        })
    }

    /// Forgets the cached kernel view; the next pass reads the kernel again.
    pub fn invalidate(&mut self) {
        self.known = None;
        self.dataplane.forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::dataplane::{Encap, NextHop, Route, TunnelPeer};

    fn plan(n: usize) -> NodeDataplane {
        let mut p = NodeDataplane {
            node: "a".into(),
            ..Default::default()
        };
        for gw in ["gw1", "gw2"] {
            p.tunnels.insert(
                gw.into(),
                TunnelPeer {
                    encap: Encap::Geneve,
                    local: "192.0.2.1".parse().unwrap(),
                    remote: if gw == "gw1" {
                        "192.0.2.2"
                    } else {
                        "192.0.2.3"
                    }
                    .parse()
                    .unwrap(),
                    vni: Some(1),
                    mtu: 1450,
                },
            );
        }
        for i in 0..n {
            p.routes.insert(
                format!("10.{}.{}.0/24", i / 256, i % 256).parse().unwrap(),
                Route {
                    nexthops: ["gw1", "gw2"]
                        .iter()
                        .map(|g| NextHop {
                            peer: g.to_string(),
                            encap: Encap::Geneve,
                            underlay: "192.0.2.2".parse().unwrap(),
                            vni: Some(1),
                        })
                        .collect(),
                    mtu: 1450,
                    pin: None,
                },
            );
        }
        p
    }

    #[tokio::test]
    async fn restart_adopts_and_health_flip_touches_every_route_once() {
        let mut r = Reconciler::new(RecordingDataplane::default(), "unwg0");
        let first = r.reconcile(&plan(10), &BTreeSet::new()).await.unwrap();
        assert_eq!(first.ops.len(), 2 + 10);
        // A new agent over the same kernel: nothing to do.
        let kernel = r.dataplane().clone();
        let mut restarted = Reconciler::new(kernel, "unwg0");
        let again = restarted
            .reconcile(&plan(10), &BTreeSet::new())
            .await
            .unwrap();
        assert!(again.ops.is_empty(), "{:?}", again.ops);
        // Pulling gw1 rewrites the ten routes through it, nothing else.
        let down = BTreeSet::from(["gw1".to_string()]);
        let flip = restarted.reconcile(&plan(10), &down).await.unwrap();
        assert_eq!(flip.ops.len(), 10);
        assert!(
            flip.ops
                .iter()
                .all(|o| matches!(o, KernelOp::ReplaceRoute { .. }))
        );
    }
}
