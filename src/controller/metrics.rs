//! Prometheus metrics of the controller.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Every metric the controller exports.
pub struct Metrics {
    registry: Registry,
    pub passes: Counter,
    pub api_writes: Counter,
    pub conflicts: Counter,
    pub write_errors: Counter,
    pub allocation_failures: Counter,
    pub is_leader: Gauge,
    pub nodes: Gauge,
    pub nodes_without_pod_cidrs: Gauge,
    pub last_pass_millis: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("unbounded_net_controller");
        let m = Metrics {
            passes: Counter::default(),
            api_writes: Counter::default(),
            conflicts: Counter::default(),
            write_errors: Counter::default(),
            allocation_failures: Counter::default(),
            is_leader: Gauge::default(),
            nodes: Gauge::default(),
            nodes_without_pod_cidrs: Gauge::default(),
            last_pass_millis: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconcile_passes",
            "Reconcile passes run as leader",
            m.passes.clone(),
        );
        registry.register(
            "api_writes",
            "Writes sent to the API server",
            m.api_writes.clone(),
        );
        registry.register(
            "api_conflicts",
            "Writes rejected with 409 Conflict (then re-read and retried)",
            m.conflicts.clone(),
        );
        registry.register(
            "api_write_errors",
            "Writes that failed",
            m.write_errors.clone(),
        );
        registry.register(
            "allocation_failures",
            "Nodes that could not get pod CIDRs in a pass",
            m.allocation_failures.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the Lease",
            m.is_leader.clone(),
        );
        registry.register("nodes", "Nodes observed", m.nodes.clone());
        registry.register(
            "nodes_without_pod_cidrs",
            "Nodes assigned to a Site that have no pod CIDRs yet",
            m.nodes_without_pod_cidrs.clone(),
        );
        registry.register(
            "last_pass_milliseconds",
            "Duration of the last reconcile pass",
            m.last_pass_millis.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
