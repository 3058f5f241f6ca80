//! Health probing of tunnel peers: the wire format, the pure per-peer state machine, the
//! table of all probed peers, and the UDP shells (responder and prober) that drive them.

pub mod machine;
pub mod socket;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::core::dataplane::ProbeTarget;

pub use machine::{Health, ProbeEvent, ProbeTimers, Prober, UnexpectedReply};
pub use wire::{ProbeKind, ProbePacket, WireError};

/// Probe state of every probed peer, kept in step with the plan's [`ProbeTarget`]s. Pure:
/// the simulator drives it with virtual time.
#[derive(Clone, Debug, Default)]
pub struct ProbeTable {
    peers: BTreeMap<String, (SocketAddr, Prober)>,
}

/// A request to put on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutgoingProbe {
    pub to: SocketAddr,
    pub packet: ProbePacket,
}

/// What one pass over the table produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeTick {
    pub send: Vec<OutgoingProbe>,
    /// Peers that entered (`true`) or left (`false`) ECMP, in peer order.
    pub changed: Vec<(String, bool)>,
}

impl ProbeTable {
    /// Adds new targets, drops removed ones, updates timers; existing state is kept so a
    /// re-plan does not reset a peer's health. Disabled targets are not probed (always up).
    pub fn sync(&mut self, targets: &BTreeMap<String, ProbeTarget>, now: Duration) {
        self.peers
            .retain(|name, _| targets.get(name).is_some_and(|t| t.enabled));
        for (name, t) in targets.iter().filter(|(_, t)| t.enabled) {
            let timers = ProbeTimers::new(t.transmit_interval, t.receive_interval, t.multiplier);
            match self.peers.get_mut(name) {
                Some((addr, prober)) => {
                    *addr = t.address;
                    if prober.timers() != timers {
                        prober.set_timers(timers);
                    }
                }
                None => {
                    self.peers
                        .insert(name.clone(), (t.address, Prober::new(timers, now)));
                }
            }
        }
    }

    pub fn on_tick(&mut self, now: Duration) -> ProbeTick {
        let mut tick = ProbeTick::default();
        for (name, (addr, prober)) in &mut self.peers {
            for ev in prober.on_tick(now) {
                match ev {
                    ProbeEvent::Send(packet) => tick.send.push(OutgoingProbe { to: *addr, packet }),
                    ProbeEvent::TrafficChanged(up) => tick.changed.push((name.clone(), up)),
                }
            }
        }
        tick
    }

    /// Feeds a reply that arrived from `from`. Unknown senders are refused.
    pub fn on_reply(
        &mut self,
        now: Duration,
        from: SocketAddr,
        packet: &ProbePacket,
    ) -> Result<(String, Duration), ReplyRefused> {
        let (name, (_, prober)) = self
            .peers
            .iter_mut()
            .find(|(_, (addr, _))| addr.ip() == from.ip())
            .ok_or(ReplyRefused::UnknownSender(from))?;
        let rtt = prober.on_reply(now, packet)?;
        Ok((name.clone(), rtt))
    }

    /// Peers currently pulled from ECMP.
    pub fn unhealthy(&self) -> BTreeSet<String> {
        self.peers
            .iter()
            .filter(|(_, (_, p))| !p.health().carries_traffic())
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn health(&self, peer: &str) -> Option<Health> {
        self.peers.get(peer).map(|(_, p)| p.health())
    }

    /// The earliest time [`ProbeTable::on_tick`] has work to do.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.peers.values().map(|(_, p)| p.next_deadline()).min()
    }

    /// Names of the probed peers.
    pub fn peers(&self) -> Vec<String> {
        self.peers.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

/// Why a received reply was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplyRefused {
    #[error("probe reply from {0}, which is no probed peer")]
    UnknownSender(SocketAddr),
    #[error(transparent)]
    Unexpected(#[from] UnexpectedReply),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(ip: &str, enabled: bool) -> ProbeTarget {
        ProbeTarget {
            address: SocketAddr::new(ip.parse().unwrap(), 51821),
            enabled,
            transmit_interval: Duration::from_millis(100),
            receive_interval: Duration::from_millis(100),
            multiplier: 3,
        }
    }

    #[test]
    fn table_tracks_targets_and_reports_unhealthy_peers() {
        let mut targets = BTreeMap::new();
        targets.insert("gw-a".to_string(), target("10.0.1.1", true));
        targets.insert("gw-b".to_string(), target("10.0.2.1", true));
        targets.insert("off".to_string(), target("10.0.3.1", false));
        let mut table = ProbeTable::default();
        table.sync(&targets, Duration::ZERO);
        assert_eq!(table.len(), 2, "disabled target must not be probed");

        let mut now = Duration::ZERO;
        let mut changed = Vec::new();
        while now < Duration::from_secs(1) {
            let tick = table.on_tick(now);
            for out in tick.send {
                // Only gw-a answers.
                if out.to.ip().to_string() == "10.0.1.1" {
                    table.on_reply(now, out.to, &out.packet.reply()).unwrap();
                }
            }
            changed.extend(tick.changed);
            now += Duration::from_millis(10);
        }
        assert_eq!(changed, vec![("gw-b".to_string(), false)]);
        assert_eq!(table.unhealthy(), BTreeSet::from(["gw-b".to_string()]));
        let stranger = SocketAddr::new("192.0.2.9".parse().unwrap(), 51821);
        let p = ProbePacket::request(1, 0).reply();
        assert_eq!(
            table.on_reply(now, stranger, &p),
            Err(ReplyRefused::UnknownSender(stranger))
        );

        // Removing a target forgets it; re-adding starts it fresh (up).
        targets.remove("gw-b");
        table.sync(&targets, now);
        assert!(table.unhealthy().is_empty());
        assert_eq!(table.health("gw-b"), None);
    }
}
