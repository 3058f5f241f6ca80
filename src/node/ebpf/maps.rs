//! The program's maps from user space: the two LPM tries keyed by prefix and the per-CPU
//! counters. Every write is one `bpf(BPF_MAP_UPDATE_ELEM)`; an update of an existing prefix
//! replaces its value atomically, so packets see the old or the new entry, never neither.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Map, MapData, PerCpuArray};
use ipnet::IpNet;
use unbounded_net_common::{COUNTERS, ROUTES_V4, ROUTES_V6, RouteEntry, counter};

use super::EbpfError;

/// Packet counters summed over CPUs (see [`unbounded_net_common::counter`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub redirects: u64,
    pub no_healthy: u64,
    pub errors: u64,
    pub passed: u64,
}

/// Handles on the three maps.
pub struct RouteMaps {
    v4: LpmTrie<MapData, [u8; 4], RouteEntry>,
    v6: LpmTrie<MapData, [u8; 16], RouteEntry>,
    counters: PerCpuArray<MapData, u64>,
}

fn map_err(what: &str) -> impl FnOnce(aya::maps::MapError) -> EbpfError + '_ {
    move |e| EbpfError::Map {
        what: what.to_string(),
        message: e.to_string(),
    }
}

fn is_not_found(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(s) => s.io_error.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

impl RouteMaps {
    /// Takes the maps out of a loaded program.
    pub fn from_loaded(bpf: &mut aya::Ebpf) -> Result<Self, EbpfError> {
        let mut take = |name: &str| {
            bpf.take_map(name).ok_or_else(|| EbpfError::Map {
                what: name.to_string(),
                message: "not in the program object".into(),
            })
        };
        let (v4, v6, c) = (take(ROUTES_V4)?, take(ROUTES_V6)?, take(COUNTERS)?);
        Self::from_maps(v4, v6, c)
    }

    /// Opens the maps pinned under `dir` (a second process, a test, `--cleanup`).
    pub fn from_pins(dir: &Path) -> Result<Self, EbpfError> {
        let open = |name: &str| {
            MapData::from_pin(dir.join(name)).map_err(|e| EbpfError::Map {
                what: format!("{}", dir.join(name).display()),
                message: e.to_string(),
            })
        };
        Self::from_maps(
            Map::LpmTrie(open(ROUTES_V4)?),
            Map::LpmTrie(open(ROUTES_V6)?),
            Map::PerCpuArray(open(COUNTERS)?),
        )
    }

    fn from_maps(v4: Map, v6: Map, counters: Map) -> Result<Self, EbpfError> {
        Ok(RouteMaps {
            v4: LpmTrie::try_from(v4).map_err(map_err(ROUTES_V4))?,
            v6: LpmTrie::try_from(v6).map_err(map_err(ROUTES_V6))?,
            counters: PerCpuArray::try_from(counters).map_err(map_err(COUNTERS))?,
        })
    }

    /// The exact entry for `prefix` (not a longest-prefix match).
    pub fn get(&self, prefix: IpNet) -> Result<Option<RouteEntry>, EbpfError> {
        let r = match prefix.trunc() {
            IpNet::V4(n) => self
                .v4
                .get(&Key::new(u32::from(n.prefix_len()), n.addr().octets()), 0),
            IpNet::V6(n) => self
                .v6
                .get(&Key::new(u32::from(n.prefix_len()), n.addr().octets()), 0),
        };
        match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(map_err("route lookup")(e)),
        }
    }

    pub fn insert(&mut self, prefix: IpNet, entry: &RouteEntry) -> Result<(), EbpfError> {
        match prefix.trunc() {
            IpNet::V4(n) => self.v4.insert(
                &Key::new(u32::from(n.prefix_len()), n.addr().octets()),
                entry,
                0,
            ),
            IpNet::V6(n) => self.v6.insert(
                &Key::new(u32::from(n.prefix_len()), n.addr().octets()),
                entry,
                0,
            ),
        }
        .map_err(map_err("route insert"))
    }

    /// Removes `prefix`; absent is fine.
    pub fn remove(&mut self, prefix: IpNet) -> Result<(), EbpfError> {
        let r = match prefix.trunc() {
            IpNet::V4(n) => self
                .v4
                .remove(&Key::new(u32::from(n.prefix_len()), n.addr().octets())),
            IpNet::V6(n) => self
                .v6
                .remove(&Key::new(u32::from(n.prefix_len()), n.addr().octets())),
        };
        match r {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(map_err("route remove")(e)),
        }
    }

    /// Every prefix in both maps.
    pub fn entries(&self) -> Result<BTreeMap<IpNet, RouteEntry>, EbpfError> {
        let mut out = BTreeMap::new();
        for kv in self.v4.iter() {
            let (k, v) = kv.map_err(map_err(ROUTES_V4))?;
            let net = IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8);
            out.extend(net.ok().map(|n| (n, v)));
        }
        for kv in self.v6.iter() {
            let (k, v) = kv.map_err(map_err(ROUTES_V6))?;
            let net = IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8);
            out.extend(net.ok().map(|n| (n, v)));
        }
        Ok(out)
    }

    pub fn counters(&self) -> Result<Counters, EbpfError> {
        let sum = |i: u32| -> Result<u64, EbpfError> {
            let values = self.counters.get(&i, 0).map_err(map_err(COUNTERS))?;
            Ok(values.iter().sum())
        };
        Ok(Counters {
            hits: sum(counter::HITS)?,
            misses: sum(counter::MISSES)?,
            redirects: sum(counter::REDIRECTS)?,
            no_healthy: sum(counter::NO_HEALTHY)?,
            errors: sum(counter::ERRORS)?,
            passed: sum(counter::PASSED)?,
        })
    }
}
