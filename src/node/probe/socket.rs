//! UDP shells around the pure probe machinery: a responder that answers every well-formed
//! request, and a prober task that drives a [`ProbeTable`] with the real clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{Mutex, watch};
use tracing::{debug, info};

use super::wire::{PROBE_LEN, ProbeKind, ProbePacket};
use super::{ProbeTable, ReplyRefused};

/// Counters shared by the shells (exported as metrics).
#[derive(Debug, Default)]
pub struct ProbeCounters {
    pub requests_answered: AtomicU64,
    pub replies_accepted: AtomicU64,
    /// Datagrams that were not a well-formed probe.
    pub malformed: AtomicU64,
    /// Well-formed probes that were not expected (unknown sender, stale sequence, wrong kind).
    pub unexpected: AtomicU64,
}

/// Answers probe requests on `socket` until the task is dropped.
pub async fn run_responder(socket: UdpSocket, counters: Arc<ProbeCounters>) -> std::io::Result<()> {
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await?;
        match ProbePacket::decode(&buf[..n]) {
            Ok(p) if p.kind == ProbeKind::Request => {
                socket.send_to(&p.reply().encode(), from).await?;
                counters.requests_answered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                counters.unexpected.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                debug!(%from, error = %e, "dropped malformed probe");
            }
        }
    }
}

/// Health of every probed peer as the prober last saw it; `changed()` wakes the reconciler.
pub type HealthWatch = watch::Receiver<std::collections::BTreeSet<String>>;

/// Runs the prober: sends due requests, feeds replies, publishes the unhealthy set whenever
/// it changes. `table` is shared so the agent can `sync` it with new plans. The clock is the
/// process's monotonic clock measured from `origin`.
pub async fn run_prober(
    socket: UdpSocket,
    table: Arc<Mutex<ProbeTable>>,
    origin: Instant,
    unhealthy: watch::Sender<std::collections::BTreeSet<String>>,
    counters: Arc<ProbeCounters>,
    rtt: impl Fn(&str, Duration) + Send,
) -> std::io::Result<()> {
    let mut buf = [0u8; 512];
    loop {
        let now = origin.elapsed();
        let (tick, deadline) = {
            let mut t = table.lock().await;
            let tick = t.on_tick(now);
            (tick, t.next_deadline())
        };
        for out in &tick.send {
            // A send error (no route yet) is what a lost probe looks like; keep going.
            if let Err(e) = socket.send_to(&out.packet.encode(), out.to).await {
                debug!(to = %out.to, error = %e, "probe send failed");
            }
        }
        if !tick.changed.is_empty() {
            for (peer, up) in &tick.changed {
                info!(%peer, up, "peer health changed");
            }
            let set = table.lock().await.unhealthy();
            unhealthy.send_replace(set);
        }
        let wait = deadline
            .map(|d| d.saturating_sub(origin.elapsed()))
            .unwrap_or(Duration::from_millis(200))
            .max(Duration::from_millis(1));
        match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            Err(_) => {}
            Ok(Err(e)) => debug!(error = %e, "probe receive failed"),
            Ok(Ok((n, from))) => {
                handle_reply(&buf[..n], from, &table, origin, &counters, &rtt).await
            }
        }
    }
}

async fn handle_reply(
    datagram: &[u8],
    from: SocketAddr,
    table: &Mutex<ProbeTable>,
    origin: Instant,
    counters: &ProbeCounters,
    rtt: &impl Fn(&str, Duration),
) {
    if datagram.len() != PROBE_LEN {
        counters.malformed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let packet = match ProbePacket::decode(datagram) {
        Ok(p) => p,
        Err(_) => {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    match table.lock().await.on_reply(origin.elapsed(), from, &packet) {
        Ok((peer, sample)) => {
            counters.replies_accepted.fetch_add(1, Ordering::Relaxed);
            rtt(&peer, sample);
        }
        Err(ReplyRefused::UnknownSender(_)) | Err(ReplyRefused::Unexpected(_)) => {
            counters.unexpected.fetch_add(1, Ordering::Relaxed);
        }
    }
}
