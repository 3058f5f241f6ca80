//! Prometheus metrics of the node agent and the tiny HTTP endpoint serving them with
//! `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tracing::info;

use super::probe::socket::ProbeCounters;

type PeerLabel = Vec<(String, String)>;

/// Every metric the agent exports (prefix `unbounded_net_node_`).
pub struct NodeMetrics {
    registry: Registry,
    pub tunnel_peers: Gauge,
    pub wireguard_peers: Gauge,
    pub routes: Gauge,
    /// 1 while the peer carries traffic, 0 while pulled from ECMP.
    pub peer_healthy: Family<PeerLabel, Gauge>,
    pub probe_rtt_seconds: Histogram,
    pub health_transitions: Counter,
    pub reconcile_seconds: Histogram,
    pub dataplane_ops: Counter,
    pub netlink_messages: Counter,
    pub op_failures: Counter,
    pub plan_problems: Gauge,
    pub api_errors: Counter,
    /// Packets the eBPF dataplane's TC program handled, by `path` (see `node::ebpf::export`).
    pub ebpf_packets: Family<PeerLabel, Counter>,
    probes_malformed: Gauge,
    probes_unexpected: Gauge,
    probes: Arc<ProbeCounters>,
    /// Set after the first successful reconcile.
    pub ready: AtomicBool,
}

impl NodeMetrics {
    pub fn new(probes: Arc<ProbeCounters>) -> Arc<Self> {
        let mut r = Registry::with_prefix("unbounded_net_node");
        let m = NodeMetrics {
            tunnel_peers: Gauge::default(),
            wireguard_peers: Gauge::default(),
            routes: Gauge::default(),
            peer_healthy: Family::default(),
            probe_rtt_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            health_transitions: Counter::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            dataplane_ops: Counter::default(),
            netlink_messages: Counter::default(),
            op_failures: Counter::default(),
            plan_problems: Gauge::default(),
            api_errors: Counter::default(),
            ebpf_packets: Family::default(),
            probes_malformed: Gauge::default(),
            probes_unexpected: Gauge::default(),
            probes,
            ready: AtomicBool::new(false),
            registry: Registry::default(),
        };
        r.register(
            "tunnel_peers",
            "Per-peer tunnel devices planned",
            m.tunnel_peers.clone(),
        );
        r.register(
            "wireguard_peers",
            "WireGuard peers planned",
            m.wireguard_peers.clone(),
        );
        r.register("routes", "Remote prefixes planned", m.routes.clone());
        r.register(
            "peer_healthy",
            "1 if the probed peer is in ECMP",
            m.peer_healthy.clone(),
        );
        r.register(
            "probe_rtt_seconds",
            "Health probe round trip",
            m.probe_rtt_seconds.clone(),
        );
        r.register(
            "health_transitions",
            "Peers entering or leaving ECMP",
            m.health_transitions.clone(),
        );
        r.register(
            "reconcile_seconds",
            "Duration of a dataplane reconcile pass",
            m.reconcile_seconds.clone(),
        );
        r.register(
            "dataplane_ops",
            "Kernel operations applied",
            m.dataplane_ops.clone(),
        );
        r.register(
            "netlink_messages",
            "Netlink requests sent",
            m.netlink_messages.clone(),
        );
        r.register(
            "dataplane_op_failures",
            "Kernel operations refused",
            m.op_failures.clone(),
        );
        r.register(
            "plan_problems",
            "Plan entries skipped as invalid",
            m.plan_problems.clone(),
        );
        r.register(
            "api_errors",
            "Failed reads of the Kubernetes API",
            m.api_errors.clone(),
        );
        r.register(
            "ebpf_packets",
            "Packets the eBPF program handled, by path",
            m.ebpf_packets.clone(),
        );
        r.register(
            "probes_malformed",
            "Malformed probe datagrams dropped",
            m.probes_malformed.clone(),
        );
        r.register(
            "probes_unexpected",
            "Unexpected probe datagrams dropped",
            m.probes_unexpected.clone(),
        );
        let mut m = m;
        m.registry = r;
        Arc::new(m)
    }

    pub fn render(&self) -> String {
        self.probes_malformed
            .set(self.probes.malformed.load(Ordering::Relaxed) as i64);
        self.probes_unexpected
            .set(self.probes.unexpected.load(Ordering::Relaxed) as i64);
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn set_peer_health(&self, peer: &str, healthy: bool) {
        self.peer_healthy
            .get_or_create(&vec![("peer".to_string(), peer.to_string())])
            .set(i64::from(healthy));
    }
}

/// Serves `/metrics`, `/healthz`, `/readyz` until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<NodeMetrics>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    info!(%bound, "serving /metrics /healthz /readyz");
    let task = tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let Ok(n) = read_some(&conn, &mut buf).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = match path {
                    "/healthz" => ("200 OK", "ok\n".to_string()),
                    "/readyz" if metrics.ready.load(Ordering::Relaxed) => ("200 OK", "ok\n".into()),
                    "/readyz" => (
                        "503 Service Unavailable",
                        "dataplane not programmed yet\n".into(),
                    ),
                    "/metrics" => ("200 OK", metrics.render()),
                    _ => ("404 Not Found", "not found\n".to_string()),
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = write_all(&conn, resp.as_bytes()).await;
            });
        }
    });
    Ok((bound, task))
}

// Without tokio's io-util feature: readiness + try_read/try_write.
async fn read_some(conn: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        conn.readable().await?;
        match conn.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

async fn write_all(conn: &TcpStream, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        conn.writable().await?;
        match conn.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_agent_metrics() {
        let probes = Arc::new(ProbeCounters::default());
        probes.malformed.fetch_add(3, Ordering::Relaxed);
        let m = NodeMetrics::new(probes);
        m.set_peer_health("gw-1", false);
        m.dataplane_ops.inc_by(5);
        let text = m.render();
        assert!(
            text.contains("unbounded_net_node_probes_malformed 3"),
            "{text}"
        );
        assert!(
            text.contains("unbounded_net_node_peer_healthy{peer=\"gw-1\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("unbounded_net_node_dataplane_ops_total 5"),
            "{text}"
        );
    }
}
