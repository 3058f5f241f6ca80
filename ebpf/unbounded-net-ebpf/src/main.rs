//! TC egress classifier on the `unbounded0` anchor.
//!
//! The kernel routes every remote pod prefix to the anchor; this program takes each packet
//! there, finds its prefix in an LPM trie, picks a healthy nexthop by flow hash, writes the
//! tunnel key (and for L2 tunnels the inner destination MAC) and redirects the packet to the
//! node's shared flow-based tunnel device or to the WireGuard device; an unencapsulated
//! nexthop goes out of its gateway's link with the neighbour table filling in the MAC
//! (`bpf_redirect_neigh`, kernel 5.10+). Anything it cannot
//! forward is dropped and counted: the anchor leads nowhere, so passing would black-hole
//! the packet silently.
#![no_std]
#![no_main]

use aya_ebpf::bindings::{
    BPF_F_TUNINFO_IPV6, TC_ACT_OK, TC_ACT_SHOT, bpf_redir_neigh, bpf_tunnel_key,
};
use aya_ebpf::helpers::generated::{bpf_redirect, bpf_redirect_neigh, bpf_skb_set_tunnel_key};
use aya_ebpf::macros::{classifier, map};
use aya_ebpf::maps::PerCpuArray;
use aya_ebpf::maps::lpm_trie::{Key, LpmTrie};
use aya_ebpf::programs::TcContext;
use unbounded_net_common::{
    MAX_PREFIXES, RouteEntry, TUNNEL_DEVICE_MAC, bounded_slot, counter, flags, flow_hash, pick,
    proto,
};

#[map(name = "UNB_ROUTES_V4")]
static ROUTES_V4: LpmTrie<[u8; 4], RouteEntry> = LpmTrie::pinned(MAX_PREFIXES, 0);

#[map(name = "UNB_ROUTES_V6")]
static ROUTES_V6: LpmTrie<[u8; 16], RouteEntry> = LpmTrie::pinned(MAX_PREFIXES, 0);

#[map(name = "UNB_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(counter::COUNT, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// Outer TTL of encapsulated packets.
const TUNNEL_TTL: u8 = 64;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[inline(always)]
fn count(index: u32) {
    if let Some(c) = COUNTERS.get_ptr_mut(index) {
        // Per-CPU slot: no other CPU writes it, a plain add is enough.
        unsafe { *c += 1 };
    }
}

#[classifier]
pub fn unbounded_egress(ctx: TcContext) -> i32 {
    match forward(&ctx) {
        Ok(action) => action,
        Err(()) => {
            count(counter::ERRORS);
            TC_ACT_SHOT as i32
        }
    }
}

/// Source and destination ports of a TCP or UDP packet at `l4` (0 for other protocols, so
/// all such packets between two hosts share one flow).
#[inline(always)]
fn ports(ctx: &TcContext, l4: usize, protocol: u8) -> u32 {
    if protocol == IPPROTO_TCP || protocol == IPPROTO_UDP {
        ctx.load::<u32>(l4).unwrap_or(0)
    } else {
        0
    }
}

fn forward(ctx: &TcContext) -> Result<i32, ()> {
    let ethertype = u16::from_be(ctx.load::<u16>(12).map_err(|_| ())?);
    let mut words = [0u32; 9];
    let entry = match ethertype {
        ETH_P_IP => {
            let vihl: u8 = ctx.load(ETH_HLEN).map_err(|_| ())?;
            let frag = u16::from_be(ctx.load::<u16>(ETH_HLEN + 6).map_err(|_| ())?);
            let protocol: u8 = ctx.load(ETH_HLEN + 9).map_err(|_| ())?;
            let src: u32 = ctx.load(ETH_HLEN + 12).map_err(|_| ())?;
            let dst: [u8; 4] = ctx.load(ETH_HLEN + 16).map_err(|_| ())?;
            if dst[0] >= 224 {
                count(counter::PASSED);
                return Ok(TC_ACT_OK as i32);
            }
            let l4 = ETH_HLEN + ((vihl & 0x0f) as usize) * 4;
            words[0] = src;
            words[1] = u32::from_ne_bytes(dst);
            words[7] = protocol as u32;
            // Fragments carry no ports after the first: hash every fragment without them, so
            // all fragments of a datagram take one nexthop.
            if frag & 0x3fff == 0 {
                words[8] = ports(ctx, l4, protocol);
            }
            ROUTES_V4.get(Key::new(32, dst))
        }
        ETH_P_IPV6 => {
            let protocol: u8 = ctx.load(ETH_HLEN + 6).map_err(|_| ())?;
            let src: [u32; 4] = ctx.load(ETH_HLEN + 8).map_err(|_| ())?;
            let dst: [u8; 16] = ctx.load(ETH_HLEN + 24).map_err(|_| ())?;
            if dst[0] == 0xff {
                count(counter::PASSED);
                return Ok(TC_ACT_OK as i32);
            }
            words[0] = src[0] ^ src[1] ^ src[2] ^ src[3];
            let mut i = 0;
            while i < 4 {
                words[1 + i] = u32::from_ne_bytes([
                    dst[4 * i],
                    dst[4 * i + 1],
                    dst[4 * i + 2],
                    dst[4 * i + 3],
                ]);
                i += 1;
            }
            words[7] = protocol as u32;
            // Extension headers are not walked: such packets hash without ports.
            words[8] = ports(ctx, ETH_HLEN + 40, protocol);
            ROUTES_V6.get(Key::new(128, dst))
        }
        _ => {
            count(counter::PASSED);
            return Ok(TC_ACT_OK as i32);
        }
    };
    let Some(entry) = entry else {
        count(counter::MISSES);
        return Ok(TC_ACT_SHOT as i32);
    };
    count(counter::HITS);
    let Some(slot) = pick(entry, flow_hash(&words)) else {
        count(counter::NO_HEALTHY);
        return Ok(TC_ACT_SHOT as i32);
    };
    let nh = &entry.nexthops[bounded_slot(slot)];
    match nh.protocol {
        proto::VXLAN | proto::GENEVE | proto::IPIP => {
            let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
            key.tunnel_id = nh.vni;
            key.tunnel_ttl = TUNNEL_TTL;
            let mut tflags = 0u64;
            if nh.flags & flags::UNDERLAY_V6 != 0 {
                let mut v6 = [0u32; 4];
                let mut i = 0;
                while i < 4 {
                    v6[i] = u32::from_ne_bytes([
                        nh.underlay[4 * i],
                        nh.underlay[4 * i + 1],
                        nh.underlay[4 * i + 2],
                        nh.underlay[4 * i + 3],
                    ]);
                    i += 1;
                }
                key.__bindgen_anon_1.remote_ipv6 = v6;
                tflags |= BPF_F_TUNINFO_IPV6 as u64;
            } else {
                // The helper takes the IPv4 remote in host byte order.
                key.__bindgen_anon_1.remote_ipv4 = u32::from_be_bytes([
                    nh.underlay[0],
                    nh.underlay[1],
                    nh.underlay[2],
                    nh.underlay[3],
                ]);
            }
            let rc = unsafe {
                bpf_skb_set_tunnel_key(
                    ctx.skb.skb,
                    &mut key,
                    core::mem::size_of::<bpf_tunnel_key>() as u32,
                    tflags,
                )
            };
            if rc != 0 {
                return Err(());
            }
            if nh.protocol != proto::IPIP {
                // A flow-based VXLAN/GENEVE receiver only accepts frames addressed to it.
                ctx.store(0, &TUNNEL_DEVICE_MAC, 0).map_err(|_| ())?;
            }
        }
        proto::WIREGUARD => {}
        proto::GATEWAY => {
            let mut params: bpf_redir_neigh = unsafe { core::mem::zeroed() };
            if nh.flags & flags::UNDERLAY_V6 != 0 {
                params.nh_family = AF_INET6;
                let mut v6 = [0u32; 4];
                let mut i = 0;
                while i < 4 {
                    v6[i] = u32::from_ne_bytes([
                        nh.underlay[4 * i],
                        nh.underlay[4 * i + 1],
                        nh.underlay[4 * i + 2],
                        nh.underlay[4 * i + 3],
                    ]);
                    i += 1;
                }
                params.__bindgen_anon_1.ipv6_nh = v6;
            } else {
                params.nh_family = AF_INET;
                // Network byte order, as the bytes are stored.
                params.__bindgen_anon_1.ipv4_nh = u32::from_ne_bytes([
                    nh.underlay[0],
                    nh.underlay[1],
                    nh.underlay[2],
                    nh.underlay[3],
                ]);
            }
            count(counter::REDIRECTS);
            // The MAC header the anchor gave the packet is replaced by the gateway's.
            return Ok(unsafe {
                bpf_redirect_neigh(
                    nh.ifindex,
                    &mut params,
                    core::mem::size_of::<bpf_redir_neigh>() as i32,
                    0,
                )
            } as i32);
        }
        _ => return Err(()),
    }
    count(counter::REDIRECTS);
    Ok(unsafe { bpf_redirect(nh.ifindex, 0) } as i32)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
