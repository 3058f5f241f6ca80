//! Link MTU from the real encapsulation overhead and the underlay address family.
//!
//! Overheads (bytes added outside the inner IP packet):
//!
//! | encap     | IPv4 underlay | IPv6 underlay | made of |
//! |-----------|---------------|---------------|---------|
//! | WireGuard | 60            | 80            | IP 20/40 + UDP 8 + WireGuard header 16 + auth tag 16 |
//! | GENEVE    | 50            | 70            | IP 20/40 + UDP 8 + GENEVE 8 (no options) + inner Ethernet 14 |
//! | VXLAN     | 50            | 70            | IP 20/40 + UDP 8 + VXLAN 8 + inner Ethernet 14 |
//! | IPIP      | 20            | 40            | outer IP header only (ip6tnl for IPv6) |
//! | None      | 0             | 0             | |
//!
//! The source document's table quotes WireGuard 80 (the IPv6 worst case) and GENEVE/VXLAN 58
//! (50 plus 8 bytes of headroom, e.g. one GENEVE option or an 802.1Q tag); we use the exact
//! figures per family, so IPv4 links get the larger MTU they can really carry.
//!
//! Underlay MTU is per node, not per cluster: each agent detects the MTU of its own underlay
//! interface and publishes it ([`UNDERLAY_MTU_ANNOTATION`](crate::api::UNDERLAY_MTU_ANNOTATION),
//! carried into the SiteNodeSlices). A link's MTU is then computed from the smaller of its two
//! ends, so a 9000-byte site talking to a 1400-byte one uses 1400 on both sides; a route's
//! path MTU is the smallest link MTU along it (gateway hops included). A node that has
//! published nothing is assumed to have [`PlanSettings::underlay_mtu`](super::PlanSettings).

use super::dataplane::Encap;

/// Underlay MTU assumed when nothing else is configured.
pub const DEFAULT_UNDERLAY_MTU: u32 = 1500;
/// Smallest underlay MTU a node may publish (the IPv4 minimum datagram size).
pub const MIN_UNDERLAY_MTU: u32 = 576;
/// Largest underlay MTU a node may publish (the largest IPv4 datagram).
pub const MAX_UNDERLAY_MTU: u32 = 65535;
/// Smallest `tunnelMTU` the API accepts (the IPv4 minimum datagram size).
pub const MIN_TUNNEL_MTU: u32 = 576;
/// Largest `tunnelMTU` the API accepts (jumbo frames).
pub const MAX_TUNNEL_MTU: u32 = 9000;

/// Bytes the encapsulation adds, for an IPv6 (`true`) or IPv4 underlay.
pub fn overhead(encap: Encap, underlay_ipv6: bool) -> u32 {
    let ip = if underlay_ipv6 { 40 } else { 20 };
    match encap {
        Encap::WireGuard => ip + 8 + 32,
        Encap::Geneve | Encap::Vxlan => ip + 8 + 8 + 14,
        Encap::Ipip => ip,
        Encap::None => 0,
    }
}

/// A published underlay MTU: decimal, within [`MIN_UNDERLAY_MTU`]..=[`MAX_UNDERLAY_MTU`].
pub fn parse_underlay_mtu(value: &str) -> Option<u32> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|m| valid_underlay_mtu(*m))
}

/// Whether `mtu` is a plausible underlay MTU.
pub fn valid_underlay_mtu(mtu: u32) -> bool {
    (MIN_UNDERLAY_MTU..=MAX_UNDERLAY_MTU).contains(&mtu)
}

/// Inner MTU of a link: what fits the underlay after encapsulation, lowered further by the
/// governing scope's `tunnelMTU` when that is set (a `tunnelMTU` above what the underlay can
/// carry would black-hole large packets, so it never raises the MTU).
pub fn link_mtu(
    encap: Encap,
    underlay_ipv6: bool,
    underlay_mtu: u32,
    tunnel_mtu: Option<u32>,
) -> u32 {
    let fits = underlay_mtu.saturating_sub(overhead(encap, underlay_ipv6));
    match tunnel_mtu {
        Some(t) => fits.min(t),
        None => fits,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(Encap::WireGuard, false, 1440)]
    #[case(Encap::WireGuard, true, 1420)]
    #[case(Encap::Geneve, false, 1450)]
    #[case(Encap::Geneve, true, 1430)]
    #[case(Encap::Vxlan, false, 1450)]
    #[case(Encap::Vxlan, true, 1430)]
    #[case(Encap::Ipip, false, 1480)]
    #[case(Encap::Ipip, true, 1460)]
    #[case(Encap::None, false, 1500)]
    #[case(Encap::None, true, 1500)]
    fn mtu_per_encap_and_family(#[case] encap: Encap, #[case] v6: bool, #[case] want: u32) {
        assert_eq!(link_mtu(encap, v6, DEFAULT_UNDERLAY_MTU, None), want);
    }

    #[rstest]
    #[case(Some(1280), 1280)]
    #[case(Some(9000), 1440)]
    #[case(None, 1440)]
    fn tunnel_mtu_only_lowers(#[case] tunnel_mtu: Option<u32>, #[case] want: u32) {
        assert_eq!(link_mtu(Encap::WireGuard, false, 1500, tunnel_mtu), want);
    }

    #[test]
    fn jumbo_underlay_raises_the_link_mtu() {
        assert_eq!(link_mtu(Encap::Geneve, false, 9000, None), 8950);
    }

    #[rstest]
    #[case("1500", Some(1500))]
    #[case(" 9000\n", Some(9000))]
    #[case("576", Some(576))]
    #[case("575", None)]
    #[case("65536", None)]
    #[case("-1", None)]
    #[case("jumbo", None)]
    #[case("", None)]
    fn published_underlay_mtu_is_checked(#[case] value: &str, #[case] want: Option<u32>) {
        assert_eq!(parse_underlay_mtu(value), want);
    }

    #[test]
    fn tiny_underlay_does_not_underflow() {
        assert_eq!(link_mtu(Encap::WireGuard, true, 40, None), 0);
    }
}
