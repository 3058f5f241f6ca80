//! The program's per-CPU counters as agent metrics, `unbounded_net_node_ebpf_packets_total`
//! with a `path` label, read through a second handle on the pinned counter map (the
//! dataplane itself lives in the reconcile loop).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use super::maps::{Counters, RouteMaps};
use crate::node::metrics::NodeMetrics;

/// `path` label values, in the order of [`Counters`]' fields.
pub const PATHS: [&str; 6] = [
    "hits",
    "misses",
    "redirects",
    "no_healthy",
    "errors",
    "passed",
];

fn values(c: &Counters) -> [u64; 6] {
    [
        c.hits,
        c.misses,
        c.redirects,
        c.no_healthy,
        c.errors,
        c.passed,
    ]
}

/// Adds what the counters grew by since `previous` to the metrics.
pub fn publish(metrics: &NodeMetrics, previous: &Counters, now: &Counters) {
    for ((path, before), after) in PATHS.iter().zip(values(previous)).zip(values(now)) {
        metrics
            .ebpf_packets
            .get_or_create(&vec![("path".to_string(), path.to_string())])
            .inc_by(after.saturating_sub(before));
    }
}

/// Copies the counters into `metrics` every `every` until the task is dropped.
pub async fn run_exporter(pin_dir: PathBuf, metrics: Arc<NodeMetrics>, every: Duration) {
    let mut previous = Counters::default();
    let mut maps = None;
    loop {
        if maps.is_none() {
            match RouteMaps::from_pins(&pin_dir) {
                Ok(m) => maps = Some(m),
                Err(e) => warn!(error = %e, "eBPF counters not readable yet"),
            }
        }
        if let Some(m) = &maps {
            match m.counters() {
                Ok(now) => {
                    publish(&metrics, &previous, &now);
                    previous = now;
                }
                Err(e) => warn!(error = %e, "cannot read the eBPF counters"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::probe::socket::ProbeCounters;

    #[test]
    fn counters_become_labelled_metric_increments() {
        let m = NodeMetrics::new(Arc::new(ProbeCounters::default()));
        let first = Counters {
            hits: 10,
            redirects: 9,
            no_healthy: 1,
            ..Default::default()
        };
        publish(&m, &Counters::default(), &first);
        let second = Counters { hits: 15, ..first };
        publish(&m, &first, &second);
        let text = m.render();
        assert!(
            text.contains("unbounded_net_node_ebpf_packets_total{path=\"hits\"} 15"),
            "{text}"
        );
        assert!(
            text.contains("unbounded_net_node_ebpf_packets_total{path=\"no_healthy\"} 1"),
            "{text}"
        );
    }
}
