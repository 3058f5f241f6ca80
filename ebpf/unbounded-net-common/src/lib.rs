//! Types shared between the kernel-side TC program and user space. `no_std` so the eBPF
//! crate can use them; every map key/value is `#[repr(C)]` with explicit padding, so both
//! sides agree on the layout byte for byte.
#![no_std]

/// Most nexthops one remote prefix carries in the LPM map value (a power of two, see
/// [`bounded_slot`]). 16 slots make a 520-byte value; the verifier walks [`pick`]'s loops
/// unrolled, so raising it again costs verifier time on every load.
pub const MAX_NEXTHOPS: usize = 16;

/// Map names (the pin file names under the pin directory).
pub const ROUTES_V4: &str = "UNB_ROUTES_V4";
pub const ROUTES_V6: &str = "UNB_ROUTES_V6";
pub const COUNTERS: &str = "UNB_COUNTERS";
/// Name of the TC program (the `tc filter show` label).
pub const PROGRAM: &str = "unbounded_egress";

/// Largest number of prefixes per address family the LPM maps hold.
pub const MAX_PREFIXES: u32 = 65_536;

/// MAC address every node gives its flow-based L2 tunnel devices (`vxlan0`, `geneve0`).
/// The program writes it as the inner destination MAC, so the receiving device accepts the
/// frame as its own; it must differ from any anchor MAC (the VXLAN driver drops frames
/// whose source MAC is its own).
pub const TUNNEL_DEVICE_MAC: [u8; 6] = [0x02, 0x55, 0x4e, 0x42, 0x00, 0x01];

/// How a nexthop leaves the node.
pub mod proto {
    /// Shared flow-based VXLAN device: set the tunnel key, fix the inner MAC, redirect.
    pub const VXLAN: u8 = 1;
    /// Shared flow-based GENEVE device (same handling as VXLAN).
    pub const GENEVE: u8 = 2;
    /// Shared flow-based IPIP device: set the tunnel key, redirect (L3, no MAC).
    pub const IPIP: u8 = 3;
    /// The WireGuard device: redirect only (WireGuard's own peer table picks the peer).
    pub const WIREGUARD: u8 = 4;
    /// Plain routed gateway (no encapsulation): `underlay` is the gateway's address on the
    /// link `ifindex`; the program hands the packet to that device with the kernel's
    /// neighbour table filling in the gateway's MAC (`bpf_redirect_neigh`).
    pub const GATEWAY: u8 = 5;
}

/// Bits of [`NextHop::flags`].
pub mod flags {
    /// The health probe considers this nexthop up; only healthy nexthops are picked.
    pub const HEALTHY: u8 = 1;
    /// `underlay` is an IPv6 address (otherwise IPv4 in its first four bytes).
    pub const UNDERLAY_V6: u8 = 2;
}

/// Indices into the per-CPU counter array.
pub mod counter {
    /// Packets whose destination matched a prefix.
    pub const HITS: u32 = 0;
    /// IP packets with no matching prefix (dropped: the anchor leads nowhere).
    pub const MISSES: u32 = 1;
    /// Packets redirected to a tunnel, the WireGuard device or a gateway's link.
    pub const REDIRECTS: u32 = 2;
    /// Packets dropped because their prefix had no healthy nexthop.
    pub const NO_HEALTHY: u32 = 3;
    /// Packets dropped because a helper failed (tunnel key, MAC rewrite, redirect).
    pub const ERRORS: u32 = 4;
    /// Packets that are not unicast IP for a remote prefix (non-IP, multicast such as the
    /// anchor's own IPv6 neighbour/MLD chatter), passed on untouched to the anchor's void.
    pub const PASSED: u32 = 5;
    /// Number of counters.
    pub const COUNT: u32 = 6;
}

/// One way to forward a prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The tunnel remote (IPv4 in the first four bytes unless [`flags::UNDERLAY_V6`]).
    pub underlay: [u8; 16],
    /// VNI written into the tunnel key (GENEVE, VXLAN).
    pub vni: u32,
    /// Interface index of the device the packet is redirected to.
    pub ifindex: u32,
    /// Which peer this is (a hash of its name), so user space can read the map back.
    pub peer_id: u32,
    /// One of [`proto`].
    pub protocol: u8,
    /// Bits of [`flags`].
    pub flags: u8,
    pub _pad: [u8; 2],
}

impl NextHop {
    pub const EMPTY: NextHop = NextHop {
        underlay: [0; 16],
        vni: 0,
        ifindex: 0,
        peer_id: 0,
        protocol: 0,
        flags: 0,
        _pad: [0; 2],
    };

    /// Whether the program may pick this nexthop.
    pub fn usable(&self) -> bool {
        self.flags & flags::HEALTHY != 0 && self.ifindex != 0
    }
}

/// Value of both LPM maps: the nexthops of one prefix, in a stable order (a flow's slot only
/// changes when its nexthop goes away).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    /// Slots in use at the front of `nexthops`.
    pub count: u32,
    /// Route MTU (also on the kernel route to the anchor); kept here so user space can read
    /// the whole route back after a restart.
    pub mtu: u32,
    pub nexthops: [NextHop; MAX_NEXTHOPS],
}

impl RouteEntry {
    pub const EMPTY: RouteEntry = RouteEntry {
        count: 0,
        mtu: 0,
        nexthops: [NextHop::EMPTY; MAX_NEXTHOPS],
    };
}

/// Flow hash over the addresses, protocol and ports: deterministic, so a flow keeps its slot
/// across packets, agent restarts and program reloads. The final mix spreads sequential
/// ports over the slots.
#[inline(always)]
pub fn flow_hash(words: &[u32; 9]) -> u32 {
    let mut h: u32 = 0x9e37_79b9;
    let mut i = 0;
    while i < 9 {
        h ^= words[i];
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        i += 1;
    }
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

const _: () = assert!(MAX_NEXTHOPS.is_power_of_two());

/// `i` masked into `0..MAX_NEXTHOPS` in a way the compiler cannot fold away. The BPF
/// verifier only accepts a variable index into a map value when the register itself is
/// bounded; LLVM knows `hash % n < MAX_NEXTHOPS` and would otherwise drop the mask.
#[inline(always)]
pub fn bounded_slot(i: usize) -> usize {
    // Safety: reading a local through a valid pointer.
    let opaque = unsafe { core::ptr::read_volatile(&i) };
    opaque & (MAX_NEXTHOPS - 1)
}

/// The slot a flow with `hash` uses: its own slot `hash % count` while that one is usable,
/// otherwise a usable slot chosen by a second hash. So a flow only moves when its nexthop
/// stops being usable, and only the flows of that nexthop move. `None`: nothing usable.
#[inline(always)]
pub fn pick(entry: &RouteEntry, hash: u32) -> Option<usize> {
    let n = if (entry.count as usize) < MAX_NEXTHOPS {
        entry.count as usize
    } else {
        MAX_NEXTHOPS
    };
    if n == 0 {
        return None;
    }
    let own = bounded_slot((hash as usize) % n);
    if entry.nexthops[own].usable() {
        return Some(own);
    }
    let mut usable = 0u32;
    let mut i = 0;
    while i < MAX_NEXTHOPS {
        if i < n && entry.nexthops[i].usable() {
            usable += 1;
        }
        i += 1;
    }
    if usable == 0 {
        return None;
    }
    let mut want = (hash >> 16).wrapping_mul(0x2545_f491) % usable;
    let mut i = 0;
    while i < MAX_NEXTHOPS {
        if i < n && entry.nexthops[i].usable() {
            if want == 0 {
                return Some(i);
            }
            want -= 1;
        }
        i += 1;
    }
    None
}

// Safety: both types are #[repr(C)] plain data with explicit padding and no invalid bit
// patterns, which is what aya::Pod requires.
#[cfg(feature = "user")]
unsafe impl aya::Pod for NextHop {}
#[cfg(feature = "user")]
unsafe impl aya::Pod for RouteEntry {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn entry(healthy: &[bool]) -> RouteEntry {
        let mut e = RouteEntry::EMPTY;
        e.count = healthy.len() as u32;
        for (i, h) in healthy.iter().enumerate() {
            e.nexthops[i].ifindex = 7;
            e.nexthops[i].protocol = proto::VXLAN;
            e.nexthops[i].flags = if *h { flags::HEALTHY } else { 0 };
        }
        e
    }

    #[test]
    fn only_the_unhealthy_nexthops_flows_move() {
        let all = entry(&[true, true, true]);
        let down = entry(&[true, false, true]);
        let mut moved = 0;
        for port in 0..1000u32 {
            let h = flow_hash(&[1, 2, 3, 4, 5, 6, 7, 17, port]);
            let before = pick(&all, h).unwrap();
            let after = pick(&down, h).unwrap();
            assert_ne!(after, 1);
            if before != 1 {
                assert_eq!(before, after, "flow {port} moved off a healthy nexthop");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 200, "slot 1 should carry about a third: {moved}");
    }

    #[test]
    fn every_one_of_the_slots_carries_flows_and_a_gateway_is_usable() {
        let mut all = entry(&[true; MAX_NEXTHOPS]);
        all.nexthops[MAX_NEXTHOPS - 1].protocol = proto::GATEWAY;
        let mut down = all;
        down.nexthops[MAX_NEXTHOPS - 1].flags = 0;
        let mut seen = [0u32; MAX_NEXTHOPS];
        for port in 0..4000u32 {
            let h = flow_hash(&[9, 8, 7, 6, 5, 4, 3, 6, port]);
            let before = pick(&all, h).unwrap();
            seen[before] += 1;
            let after = pick(&down, h).unwrap();
            if before != MAX_NEXTHOPS - 1 {
                assert_eq!(before, after, "flow {port} moved off a healthy nexthop");
            } else {
                assert_ne!(after, MAX_NEXTHOPS - 1);
            }
        }
        assert!(seen.iter().all(|n| *n > 100), "uneven spread: {seen:?}");
    }

    #[test]
    fn nothing_usable_is_none() {
        assert_eq!(pick(&entry(&[false, false]), 12345), None);
        assert_eq!(pick(&RouteEntry::EMPTY, 1), None);
    }
}
