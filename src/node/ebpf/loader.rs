//! Loads the TC program, re-using pinned maps, and attaches it to the anchor's clsact egress
//! hook through netlink (so `tc filter show dev unbounded0 egress` lists it).
//!
//! Restart: the maps are pinned by name under the pin directory, so a new agent opens the
//! same maps with every entry in them; the filter is replaced in place (same priority and
//! handle, no detach), so no packet ever meets an anchor without the program. The filter
//! outlives the agent on purpose; `--cleanup` removes it.
//!
//! Upgrade: aya re-uses a pinned map without comparing its layout, and a value of another
//! size would be misread by both sides. So a pin whose key size, value size, capacity or
//! type differs from this build's is unpinned first and a fresh map created; the first
//! pass then rewrites every prefix (packets to remote prefixes are dropped until it has).

use std::path::{Path, PathBuf};
use std::process::Command;

use aya::EbpfLoader;
use aya::maps::MapType;
use aya::maps::lpm_trie::Key;
use aya::programs::tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle};
use aya::programs::{SchedClassifier, TcAttachType};
use unbounded_net_common::{
    COUNTERS, MAX_PREFIXES, PROGRAM, ROUTES_V4, ROUTES_V6, RouteEntry, counter,
};

use super::EbpfError;
use super::maps::RouteMaps;

/// Priority and handle of our filter on the anchor's egress hook.
pub const TC_PRIORITY: u16 = 1;
pub const TC_HANDLE: u16 = 1;
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const BTF: &str = "/sys/kernel/btf/vmlinux";

/// Says why this kernel cannot run the eBPF dataplane, before anything is changed.
pub fn check_support() -> Result<(), EbpfError> {
    check_support_at(Path::new(BTF))
}

fn check_support_at(btf: &Path) -> Result<(), EbpfError> {
    let unsupported = |why: String| Err(EbpfError::Unsupported(why));
    if !btf.exists() {
        return unsupported(format!(
            "{} is missing: the kernel was built without BTF (CONFIG_DEBUG_INFO_BTF)",
            btf.display()
        ));
    }
    // A harmless BPF syscall; ENOSYS/EPERM mean no BPF for us at all.
    if let Err(e) = aya::maps::MapData::from_id(u32::MAX)
        && let aya::maps::MapError::SyscallError(s) = &e
        && matches!(s.io_error.raw_os_error(), Some(38 | 1))
    {
        return unsupported(format!("the bpf() syscall is unavailable: {}", s.io_error));
    }
    Ok(())
}

/// Mounts a BPF filesystem at the parent of `pin_dir` if none is there, then creates
/// `pin_dir`.
pub fn ensure_pin_dir(pin_dir: &Path) -> Result<(), EbpfError> {
    let fs_root = pin_dir.parent().unwrap_or(pin_dir);
    let is_bpffs =
        |p: &Path| nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type().0 == BPF_FS_MAGIC);
    if !is_bpffs(fs_root) {
        std::fs::create_dir_all(fs_root).map_err(|e| pin_error(fs_root, e.to_string()))?;
        let out = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(fs_root)
            .output()
            .map_err(|e| pin_error(fs_root, format!("cannot run mount: {e}")))?;
        if !out.status.success() || !is_bpffs(fs_root) {
            return Err(pin_error(
                fs_root,
                format!(
                    "mounting a BPF filesystem failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
    }
    std::fs::create_dir_all(pin_dir).map_err(|e| pin_error(pin_dir, e.to_string()))
}

fn pin_error(path: &Path, message: String) -> EbpfError {
    EbpfError::PinDir {
        path: path.to_path_buf(),
        message,
    }
}

fn load_error(e: impl std::fmt::Display) -> EbpfError {
    EbpfError::Load(e.to_string())
}

/// Shape of a map as this build defines it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapLayout {
    pub map_type: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

/// The layout of each pinned map this build expects, by pin name.
pub fn expected_layouts() -> [(&'static str, MapLayout); 3] {
    let size = |n: usize| n as u32;
    let lpm = |key: usize| MapLayout {
        map_type: MapType::LpmTrie,
        key_size: size(key),
        value_size: size(std::mem::size_of::<RouteEntry>()),
        max_entries: MAX_PREFIXES,
    };
    [
        (ROUTES_V4, lpm(std::mem::size_of::<Key<[u8; 4]>>())),
        (ROUTES_V6, lpm(std::mem::size_of::<Key<[u8; 16]>>())),
        (
            COUNTERS,
            MapLayout {
                map_type: MapType::PerCpuArray,
                key_size: 4,
                value_size: 8,
                max_entries: counter::COUNT,
            },
        ),
    ]
}

/// Unpins every map under `pin_dir` whose layout is not this build's (see the module
/// comment); returns the names replaced.
pub fn unpin_stale_maps(pin_dir: &Path) -> Result<Vec<&'static str>, EbpfError> {
    let mut stale = Vec::new();
    for (name, want) in expected_layouts() {
        let path = pin_dir.join(name);
        // Absent (first start) is fine; unreadable is not, or we would misread it.
        let info = match aya::maps::MapInfo::from_pin(&path) {
            Ok(i) => i,
            Err(_) if !path.exists() => continue,
            Err(e) => {
                return Err(pin_error(
                    &path,
                    format!("cannot inspect the pinned map: {e}"),
                ));
            }
        };
        let have = MapLayout {
            map_type: info
                .map_type()
                .map_err(|e| pin_error(&path, e.to_string()))?,
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
        };
        if have != want {
            tracing::warn!(
                map = name,
                ?have,
                ?want,
                "pinned map has another layout (an older agent); replacing it, every prefix is rewritten"
            );
            std::fs::remove_file(&path).map_err(|e| pin_error(&path, e.to_string()))?;
            stale.push(name);
        }
    }
    Ok(stale)
}

/// Loads the program with its maps pinned under `pin_dir` (re-using pins that exist) and
/// attaches it to `anchor`'s egress. Returns the maps.
pub fn load_and_attach(anchor: &str, pin_dir: &Path) -> Result<RouteMaps, EbpfError> {
    ensure_pin_dir(pin_dir)?;
    unpin_stale_maps(pin_dir)?;
    let mut bpf = EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .load(unbounded_net_ebpf_object::object())
        .map_err(load_error)?;
    let prog: &mut SchedClassifier = bpf
        .program_mut(PROGRAM)
        .ok_or_else(|| load_error(format!("no program {PROGRAM} in the object")))?
        .try_into()
        .map_err(load_error)?;
    prog.load()
        .map_err(|e| EbpfError::Unsupported(format!("the kernel rejected the program: {e}")))?;
    if let Err(e) = aya::programs::tc::qdisc_add_clsact(anchor) {
        // EEXIST is the normal case after a restart.
        let exists = matches!(&e, aya::programs::tc::TcError::NetlinkError(n)
            if n.raw_os_error() == Some(17));
        if !exists {
            return Err(EbpfError::Unsupported(format!(
                "cannot add the clsact qdisc to {anchor} (kernel without sch_ingress/clsact?): {e}"
            )));
        }
    }
    let options = || {
        TcAttachOptions::Netlink(NlOptions {
            priority: TC_PRIORITY,
            handle: TcHandle::new(0, TC_HANDLE),
            classid: None,
        })
    };
    let id = match prog.attach_with_options(anchor, TcAttachType::Egress, options()) {
        Ok(id) => id,
        Err(first) => {
            // Our filter is already there (a previous agent): swap the program in place.
            let link = SchedClassifierLink::attached(
                anchor,
                TcAttachType::Egress,
                TC_PRIORITY,
                TcHandle::new(0, TC_HANDLE),
                None,
            )
            .map_err(|e| load_error(format!("attach to {anchor}: {first}; then: {e}")))?;
            prog.attach_to_link(link)
                .map_err(|e| load_error(format!("attach to {anchor}: {first}; replace: {e}")))?
        }
    };
    // Dropping the link would detach the filter; it must outlive this process.
    std::mem::forget(prog.take_link(id).map_err(load_error)?);
    let pinned = pin_dir.join(PROGRAM);
    let _ = std::fs::remove_file(&pinned);
    prog.pin(&pinned).map_err(load_error)?;
    RouteMaps::from_loaded(&mut bpf)
}

/// Removes our filter from `anchor` (if it exists) and the pins; carries on past failures
/// and returns them.
pub fn detach_and_unpin(anchor: Option<&str>, pin_dir: &Path) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(anchor) = anchor
        && let Err(e) =
            aya::programs::tc::qdisc_detach_program(anchor, TcAttachType::Egress, PROGRAM)
    {
        let absent = matches!(&e, aya::programs::tc::TcError::IoError(io)
            if io.kind() == std::io::ErrorKind::NotFound);
        if !absent {
            errors.push(format!("detach {PROGRAM} from {anchor}: {e}"));
        }
    }
    let names = [
        unbounded_net_common::ROUTES_V4,
        unbounded_net_common::ROUTES_V6,
        unbounded_net_common::COUNTERS,
        PROGRAM,
    ];
    for name in names {
        let p: PathBuf = pin_dir.join(name);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("remove {}: {e}", p.display())),
        }
    }
    let _ = std::fs::remove_dir(pin_dir);
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_without_btf_is_refused_with_the_reason_and_the_alternative() {
        let e = check_support_at(Path::new("/nonexistent/btf/vmlinux")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/nonexistent/btf/vmlinux is missing"),
            "{text}"
        );
        assert!(text.contains("--dataplane netlink"), "{text}");
        // This machine's kernel has what the program needs.
        if Path::new(BTF).exists() {
            check_support().unwrap();
        }
    }
}
