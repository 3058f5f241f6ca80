//! Pure translation between the Reconciler's kernel routes and LPM map values.
//!
//! The Reconciler renders a route with its unhealthy peers left out. Here a left-out peer
//! keeps its slot with the healthy flag cleared, so the slot order (and so every other
//! flow's nexthop) stays put: flipping health rewrites one value in place, never the map.

use std::net::IpAddr;

use ipnet::IpNet;
use unbounded_net_common::{MAX_NEXTHOPS, NextHop, RouteEntry, flags, proto};

use crate::node::kernel::{KernelNextHop, KernelRoute};

/// Why a route cannot be written to the map.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error(
        "route {prefix}: {count} nexthops, the eBPF route map holds at most {MAX_NEXTHOPS} per \
         prefix; the prefix keeps its previous route"
    )]
    TooManyNextHops { prefix: IpNet, count: usize },
    #[error(
        "route {prefix}: nexthop device {device} is not a known tunnel or the WireGuard device"
    )]
    UnknownDevice { prefix: IpNet, device: String },
}

/// Same nexthop (what a slot stands for, not how it is reached right now).
fn same(a: &NextHop, b: &NextHop) -> bool {
    a.protocol == b.protocol && a.underlay == b.underlay && a.peer_id == b.peer_id
}

/// The new value for a prefix: `active` are the nexthops the Reconciler wants used (all
/// healthy), `previous` what the map held. Previous slots stay in place (healthy if active,
/// flagged unhealthy otherwise) as long as `keep` says their peer still exists; new
/// nexthops are appended. When the slots run out, unhealthy ones are dropped first.
pub fn merge(
    prefix: IpNet,
    previous: Option<&RouteEntry>,
    active: &[NextHop],
    mtu: u32,
    keep: impl Fn(&NextHop) -> bool,
) -> Result<RouteEntry, EntryError> {
    let mut slots: Vec<NextHop> = Vec::with_capacity(MAX_NEXTHOPS);
    if let Some(prev) = previous {
        let n = (prev.count as usize).min(MAX_NEXTHOPS);
        for old in &prev.nexthops[..n] {
            match active.iter().find(|a| same(a, old)) {
                Some(a) => slots.push(*a),
                None if keep(old) => {
                    let mut down = *old;
                    down.flags &= !flags::HEALTHY;
                    slots.push(down);
                }
                None => {}
            }
        }
    }
    for a in active {
        if !slots.iter().any(|s| same(s, a)) {
            slots.push(*a);
        }
    }
    if slots.len() > MAX_NEXTHOPS {
        slots.retain(|s| s.flags & flags::HEALTHY != 0);
    }
    if slots.len() > MAX_NEXTHOPS {
        return Err(EntryError::TooManyNextHops {
            prefix,
            count: slots.len(),
        });
    }
    let mut entry = RouteEntry::EMPTY;
    entry.count = slots.len() as u32;
    entry.mtu = mtu;
    entry.nexthops[..slots.len()].copy_from_slice(&slots);
    Ok(entry)
}

/// Interface-name tag of each tunnel protocol (as in `render::tunnel_name`).
fn tag(protocol: u8) -> Option<&'static str> {
    match protocol {
        proto::VXLAN => Some("vx"),
        proto::GENEVE => Some("gn"),
        proto::IPIP => Some("ip"),
        _ => None,
    }
}

/// The peer hash inside a per-peer tunnel name (`unvx1a2b3c4d` → 0x1a2b3c4d).
pub fn peer_id_of(tunnel_name: &str) -> Option<u32> {
    let hex = tunnel_name.get(4..)?;
    (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok())?
}

/// The underlay address a slot points at.
pub fn underlay_of(nh: &NextHop) -> IpAddr {
    if nh.flags & flags::UNDERLAY_V6 != 0 {
        IpAddr::from(nh.underlay)
    } else {
        IpAddr::from([
            nh.underlay[0],
            nh.underlay[1],
            nh.underlay[2],
            nh.underlay[3],
        ])
    }
}

/// Writes `addr` into a slot (IPv4 in the first four bytes, flag for IPv6).
pub fn set_underlay(nh: &mut NextHop, addr: IpAddr) {
    nh.underlay = [0; 16];
    match addr {
        IpAddr::V4(v) => {
            nh.underlay[..4].copy_from_slice(&v.octets());
            nh.flags &= !flags::UNDERLAY_V6;
        }
        IpAddr::V6(v) => {
            nh.underlay = v.octets();
            nh.flags |= flags::UNDERLAY_V6;
        }
    }
}

/// What the Reconciler last wrote for this prefix: its healthy slots, as kernel nexthops,
/// sorted and deduplicated the way `render` produces them.
pub fn to_kernel_route(entry: &RouteEntry, wireguard_device: &str) -> KernelRoute {
    let n = (entry.count as usize).min(MAX_NEXTHOPS);
    let mut nexthops: Vec<KernelNextHop> = entry.nexthops[..n]
        .iter()
        .filter(|nh| nh.flags & flags::HEALTHY != 0)
        .filter_map(|nh| match nh.protocol {
            proto::WIREGUARD => Some(KernelNextHop::Device(wireguard_device.to_string())),
            proto::GATEWAY => Some(KernelNextHop::Gateway(underlay_of(nh))),
            p => tag(p).map(|t| KernelNextHop::Device(format!("un{t}{:08x}", nh.peer_id))),
        })
        .collect();
    nexthops.sort();
    nexthops.dedup();
    KernelRoute {
        nexthops,
        mtu: entry.mtu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nh(peer_id: u32, last: u8) -> NextHop {
        let mut n = NextHop::EMPTY;
        n.protocol = proto::VXLAN;
        n.peer_id = peer_id;
        n.ifindex = 9;
        n.vni = 1;
        n.flags = flags::HEALTHY;
        set_underlay(&mut n, IpAddr::from([192, 0, 2, last]));
        n
    }

    fn prefix() -> IpNet {
        "10.1.0.0/16".parse().unwrap()
    }

    #[test]
    fn unhealthy_peer_keeps_its_slot_and_comes_back_in_place() {
        let (a, b, c) = (nh(1, 1), nh(2, 2), nh(3, 3));
        let all = merge(prefix(), None, &[a, b, c], 1400, |_| true).unwrap();
        let down = merge(prefix(), Some(&all), &[a, c], 1400, |_| true).unwrap();
        assert_eq!(down.count, 3);
        assert_eq!(down.nexthops[1].peer_id, 2);
        assert_eq!(down.nexthops[1].flags & flags::HEALTHY, 0);
        assert_eq!(down.nexthops[0], a);
        let up = merge(prefix(), Some(&down), &[c, b, a], 1400, |_| true).unwrap();
        assert_eq!(up, all);
    }

    #[test]
    fn removed_peer_loses_its_slot() {
        let (a, b) = (nh(1, 1), nh(2, 2));
        let all = merge(prefix(), None, &[a, b], 1400, |_| true).unwrap();
        let gone = merge(prefix(), Some(&all), &[a], 1400, |n| n.peer_id != 2).unwrap();
        assert_eq!(gone.count, 1);
    }

    #[test]
    fn too_many_nexthops_is_an_error_naming_the_prefix() {
        let over = MAX_NEXTHOPS + 1;
        let many: Vec<NextHop> = (0..over).map(|i| nh(i as u32, i as u8)).collect();
        let full = merge(prefix(), None, &many[..MAX_NEXTHOPS], 1400, |_| true).unwrap();
        assert_eq!(full.count as usize, MAX_NEXTHOPS);
        let e = merge(prefix(), Some(&full), &many, 1400, |_| true).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("10.1.0.0/16"), "{text}");
        assert!(text.contains(&format!("{over} nexthops")), "{text}");
        assert!(text.contains(&format!("at most {MAX_NEXTHOPS}")), "{text}");
    }

    #[test]
    fn unhealthy_slots_give_way_when_the_slots_run_out() {
        let many: Vec<NextHop> = (0..MAX_NEXTHOPS).map(|i| nh(i as u32, i as u8)).collect();
        let full = merge(prefix(), None, &many, 1400, |_| true).unwrap();
        // One down, one new: the new nexthop takes the place of the unhealthy one.
        let mut now = many[1..].to_vec();
        now.push(nh(99, 99));
        let e = merge(prefix(), Some(&full), &now, 1400, |_| true).unwrap();
        assert_eq!(e.count as usize, MAX_NEXTHOPS);
        assert!(e.nexthops.iter().all(|s| s.peer_id != 0));
        assert!(e.nexthops.iter().any(|s| s.peer_id == 99));
    }

    #[test]
    fn an_unhealthy_gateway_keeps_its_slot() {
        let a = nh(1, 1);
        let mut g = NextHop::EMPTY;
        g.protocol = proto::GATEWAY;
        g.flags = flags::HEALTHY;
        g.ifindex = 3;
        set_underlay(&mut g, "192.0.2.9".parse().unwrap());
        let both = merge(prefix(), None, &[a, g], 1400, |_| true).unwrap();
        let down = merge(prefix(), Some(&both), &[a], 1400, |_| true).unwrap();
        assert_eq!(down.count, 2);
        assert_eq!(down.nexthops[1].flags & flags::HEALTHY, 0);
        let r = to_kernel_route(&both, "unwg0");
        assert!(
            r.nexthops
                .contains(&KernelNextHop::Gateway("192.0.2.9".parse().unwrap()))
        );
    }

    #[test]
    fn reads_back_as_the_rendered_route() {
        let (a, b) = (nh(0x1a2b3c4d, 1), nh(2, 2));
        let e = merge(prefix(), None, &[a, b], 1400, |_| true).unwrap();
        let down = merge(prefix(), Some(&e), &[a], 1400, |_| true).unwrap();
        let r = to_kernel_route(&down, "unwg0");
        assert_eq!(
            r.nexthops,
            vec![KernelNextHop::Device("unvx1a2b3c4d".into())]
        );
        assert_eq!(r.mtu, 1400);
        assert_eq!(peer_id_of("unvx1a2b3c4d"), Some(0x1a2b3c4d));
        assert_eq!(peer_id_of("unwg0"), None);
    }
}
