//! One prefix of a pod CIDR pool, cut into equal per-node blocks.
//!
//! Held blocks are kept as merged, disjoint index intervals, plus a cursor below which every
//! block is held. Because intervals are merged, the end of the interval holding the cursor is
//! always free: allocation is one ordered-map lookup whatever the number of held blocks (no
//! scan of the pool), and a held range of any size (a stray /8 on a node) costs one entry.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Most blocks one prefix may be cut into (2^64: usage is reported as u64).
pub const MAX_BLOCK_BITS: u8 = 64;

/// A prefix cut into blocks of `block_len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockPool {
    cidr: IpNet,
    block_len: u8,
    capacity: u128,
    /// start → end (exclusive) of held index intervals; disjoint, never adjacent.
    held: BTreeMap<u128, u128>,
    /// Every index below the cursor is held.
    cursor: u128,
    held_count: u128,
}

/// Why a prefix cannot be cut into blocks of the requested size.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockSizeError {
    #[error("block /{block_len} is larger than the pool {cidr}")]
    LargerThanPool { cidr: IpNet, block_len: u8 },
    #[error("block /{block_len} is longer than an address of {cidr} allows")]
    TooLong { cidr: IpNet, block_len: u8 },
    #[error("cutting {cidr} into /{block_len} blocks makes more than 2^{MAX_BLOCK_BITS} blocks")]
    TooMany { cidr: IpNet, block_len: u8 },
}

fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

impl BlockPool {
    /// Cuts `cidr` (host bits ignored) into blocks of prefix length `block_len`.
    pub fn new(cidr: IpNet, block_len: u8) -> Result<Self, BlockSizeError> {
        let cidr = cidr.trunc();
        if block_len > cidr.max_prefix_len() {
            return Err(BlockSizeError::TooLong { cidr, block_len });
        }
        if block_len < cidr.prefix_len() {
            return Err(BlockSizeError::LargerThanPool { cidr, block_len });
        }
        let bits = block_len - cidr.prefix_len();
        if bits > MAX_BLOCK_BITS {
            return Err(BlockSizeError::TooMany { cidr, block_len });
        }
        Ok(BlockPool {
            cidr,
            block_len,
            capacity: 1u128 << bits,
            held: BTreeMap::new(),
            cursor: 0,
            held_count: 0,
        })
    }

    pub fn cidr(&self) -> IpNet {
        self.cidr
    }

    pub fn block_len(&self) -> u8 {
        self.block_len
    }

    /// Number of blocks in the pool.
    pub fn capacity(&self) -> u128 {
        self.capacity
    }

    /// Number of blocks held (by nodes, or overlapped by anything held).
    pub fn held(&self) -> u128 {
        self.held_count
    }

    /// True when no block is free.
    pub fn is_exhausted(&self) -> bool {
        self.cursor >= self.capacity
    }

    /// Bits of an address below the block prefix.
    fn host_bits(&self) -> u32 {
        u32::from(self.cidr.max_prefix_len() - self.block_len)
    }

    /// The CIDR of block `index` (< capacity).
    pub fn block(&self, index: u128) -> IpNet {
        let base = to_bits(self.cidr.network());
        // index < 2^(block_len - prefix_len), so the shift stays inside the address.
        let addr = base | index.checked_shl(self.host_bits()).unwrap_or(0);
        let ip = match self.cidr {
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(addr as u32)),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(addr)),
        };
        IpNet::new(ip, self.block_len).unwrap_or(self.cidr)
    }

    /// Block indices `[start, end)` that overlap `net`, if any.
    pub fn overlap(&self, net: &IpNet) -> Option<(u128, u128)> {
        let net = net.trunc();
        if net.addr().is_ipv4() != self.cidr.addr().is_ipv4() {
            return None;
        }
        if net.contains(&self.cidr) {
            return Some((0, self.capacity));
        }
        if !self.cidr.contains(&net) {
            return None;
        }
        let offset = to_bits(net.network()) - to_bits(self.cidr.network());
        let start = offset.checked_shr(self.host_bits()).unwrap_or(0);
        if net.prefix_len() >= self.block_len {
            Some((start, start + 1))
        } else {
            Some((
                start,
                start + (1u128 << (self.block_len - net.prefix_len())),
            ))
        }
    }

    /// Marks every block overlapping `net` as held; returns how many became newly held.
    pub fn hold(&mut self, net: &IpNet) -> u128 {
        match self.overlap(net) {
            Some((s, e)) => self.hold_range(s, e),
            None => 0,
        }
    }

    fn hold_range(&mut self, mut start: u128, mut end: u128) -> u128 {
        let mut covered = 0;
        // Absorb every interval that overlaps or touches [start, end).
        while let Some((&s, &e)) = self.held.range(..=end).next_back() {
            if e < start {
                break;
            }
            self.held.remove(&s);
            covered += e - s;
            start = start.min(s);
            end = end.max(e);
        }
        self.held.insert(start, end);
        let added = (end - start) - covered;
        self.held_count += added;
        if start <= self.cursor && self.cursor < end {
            self.cursor = end;
        }
        added
    }

    /// Frees every block overlapping `net` (a node was deleted).
    pub fn release(&mut self, net: &IpNet) {
        let Some((start, end)) = self.overlap(net) else {
            return;
        };
        let touching: Vec<(u128, u128)> = self
            .held
            .range(..end)
            .rev()
            .take_while(|(_, e)| **e > start)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in touching {
            self.held.remove(&s);
            self.held_count -= e.min(end) - s.max(start);
            if s < start {
                self.held.insert(s, start);
            }
            if e > end {
                self.held.insert(end, e);
            }
        }
        self.cursor = self.cursor.min(start);
    }

    /// The lowest free block, now held; `None` when the pool is exhausted.
    pub fn allocate(&mut self) -> Option<IpNet> {
        if self.is_exhausted() {
            return None;
        }
        // The cursor is always free (intervals are merged, so the one holding the old cursor
        // ended on a free index): grow the neighbours in place instead of a general merge.
        let index = self.cursor;
        let end = self.held.remove(&(index + 1)).unwrap_or(index + 1);
        match self.held.range_mut(..index).next_back() {
            Some((_, e)) if *e == index => *e = end,
            _ => {
                self.held.insert(index, end);
            }
        }
        self.held_count += 1;
        self.cursor = end;
        Some(self.block(index))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[rstest]
    #[case::v4_default("10.0.0.0/16", 24, 256, "10.0.0.0/24", "10.0.1.0/24")]
    #[case::v4_small_blocks("10.0.0.0/24", 26, 4, "10.0.0.0/26", "10.0.0.64/26")]
    #[case::v6_default("fd00::/56", 64, 256, "fd00::/64", "fd00:0:0:1::/64")]
    #[case::host_bits_ignored("10.0.3.7/16", 24, 256, "10.0.0.0/24", "10.0.1.0/24")]
    #[case::single_block("10.9.0.0/24", 24, 1, "10.9.0.0/24", "")]
    fn cuts_blocks_in_order(
        #[case] cidr: &str,
        #[case] len: u8,
        #[case] capacity: u128,
        #[case] first: &str,
        #[case] second: &str,
    ) {
        let mut p = BlockPool::new(net(cidr), len).unwrap();
        assert_eq!(p.capacity(), capacity);
        assert_eq!(p.allocate(), Some(net(first)));
        assert_eq!(p.allocate(), (!second.is_empty()).then(|| net(second)));
    }

    #[rstest]
    #[case::larger_than_pool("10.0.0.0/24", 16)]
    #[case::too_long_v4("10.0.0.0/24", 33)]
    #[case::too_many("fd00::/32", 128)]
    fn rejects_bad_block_sizes(#[case] cidr: &str, #[case] len: u8) {
        let err = BlockPool::new(net(cidr), len).unwrap_err();
        assert!(err.to_string().contains(&format!("/{len}")), "{err}");
    }

    #[rstest]
    #[case::exact_block("10.0.1.0/24", Some((1, 2)))]
    #[case::inside_block("10.0.2.128/25", Some((2, 3)))]
    #[case::spans_blocks("10.0.4.0/22", Some((4, 8)))]
    #[case::covers_pool("10.0.0.0/8", Some((0, 256)))]
    #[case::outside("10.1.0.0/24", None)]
    #[case::other_family("fd00::/64", None)]
    fn overlap_ranges(#[case] held: &str, #[case] range: Option<(u128, u128)>) {
        let p = BlockPool::new(net("10.0.0.0/16"), 24).unwrap();
        assert_eq!(p.overlap(&net(held)), range);
    }

    #[test]
    fn held_blocks_are_skipped_and_counted_once() {
        let mut p = BlockPool::new(net("10.0.0.0/16"), 24).unwrap();
        assert_eq!(p.hold(&net("10.0.0.0/24")), 1);
        assert_eq!(p.hold(&net("10.0.0.0/24")), 0);
        assert_eq!(p.hold(&net("10.0.2.0/23")), 2);
        assert_eq!(p.allocate(), Some(net("10.0.1.0/24")));
        assert_eq!(p.allocate(), Some(net("10.0.4.0/24")));
        assert_eq!(p.held(), 5);
    }

    #[test]
    fn release_makes_the_lowest_block_free_again() {
        let mut p = BlockPool::new(net("10.0.0.0/16"), 24).unwrap();
        for _ in 0..10 {
            p.allocate();
        }
        p.release(&net("10.0.3.0/24"));
        p.release(&net("10.0.7.0/24"));
        assert_eq!(p.held(), 8);
        assert_eq!(p.allocate(), Some(net("10.0.3.0/24")));
        assert_eq!(p.allocate(), Some(net("10.0.7.0/24")));
        assert_eq!(p.allocate(), Some(net("10.0.10.0/24")));
    }

    #[test]
    fn exhaustion_is_none_not_a_panic() {
        let mut p = BlockPool::new(net("10.0.0.0/30"), 32).unwrap();
        for _ in 0..4 {
            assert!(p.allocate().is_some());
        }
        assert!(p.is_exhausted());
        assert_eq!(p.allocate(), None);
        assert_eq!(p.held(), 4);
    }

    proptest::proptest! {
        /// Against a naive model (a set of held indices): allocation returns the lowest free
        /// block, holds/releases of any range keep counts exact.
        #[test]
        fn matches_a_naive_model(ops in proptest::collection::vec((0u8..3, 0u32..64, 0u8..3), 0..200)) {
            let mut p = BlockPool::new(net("10.0.0.0/24"), 30).unwrap();
            let mut model = std::collections::BTreeSet::new();
            for (op, index, span) in ops {
                let len = 30 - span; // /30, /29 or /28: 1, 2 or 4 blocks
                let start = (index as u128) & !((1u128 << span) - 1);
                let target = IpNet::new(p.block(start).addr(), len).unwrap();
                match op {
                    0 => {
                        let want = (0..64u128).find(|i| !model.contains(i));
                        let got = p.allocate();
                        proptest::prop_assert_eq!(got, want.map(|i| p.block(i)));
                        if let Some(i) = want { model.insert(i); }
                    }
                    1 => {
                        p.hold(&target);
                        model.extend(start..start + (1 << span));
                    }
                    _ => {
                        p.release(&target);
                        for i in start..start + (1 << span) { model.remove(&i); }
                    }
                }
                proptest::prop_assert_eq!(p.held(), model.len() as u128);
                proptest::prop_assert_eq!(p.is_exhausted(), model.len() == 64);
            }
        }
    }

    #[test]
    fn whole_space_pool_with_single_block() {
        let mut p = BlockPool::new(net("::/0"), 0).unwrap();
        assert_eq!(p.allocate(), Some(net("::/0")));
        assert_eq!(p.allocate(), None);
    }
}
