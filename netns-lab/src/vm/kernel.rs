//! The guest kernel: Debian's cloud kernel, unpacked by `scripts/setup.sh` into
//! `/var/cache/unbounded-net/vm-kernel/<release>/`, and the modules the lab needs from it in
//! the order they must be loaded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::VmError;

/// Where `scripts/setup.sh` unpacks the cloud kernel, one directory per release.
pub const CACHE_DIR: &str = "/var/cache/unbounded-net/vm-kernel";

/// Modules loaded at boot, before the lab starts. The tunnel and qdisc types the lab creates;
/// everything else under `kernel/net/` is shipped too and reached through the kernel's module
/// autoloading (nftables expressions, xtables matches of the CNI plugins' iptables calls).
pub const BOOT_MODULES: &[&str] = &[
    "veth",
    "bridge",
    "tun",
    "wireguard",
    "geneve",
    "ipip",
    "dummy",
    "vxlan",
    "sch_netem",
    "sch_ingress",
    "cls_bpf",
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_numgen",
    "nft_ct",
    "nft_limit",
    "nft_log",
    "nft_reject_inet",
    "nft_fib_inet",
    "nft_compat",
    "xt_MASQUERADE",
    "xt_comment",
    "xt_conntrack",
    "xt_mark",
    "xt_addrtype",
    "xt_multiport",
    "xt_nat",
];

/// One unpacked cloud kernel.
#[derive(Clone, Debug)]
pub struct GuestKernel {
    pub release: String,
    /// `<cache>/<release>` (holds `boot/` and `lib/modules/<release>/`).
    pub root: PathBuf,
}

impl GuestKernel {
    /// The newest release in the cache that has a kernel image and a `modules.dep`.
    pub fn find() -> Result<GuestKernel, VmError> {
        Self::find_in(Path::new(CACHE_DIR))
    }

    pub fn find_in(cache: &Path) -> Result<GuestKernel, VmError> {
        let mut found: Vec<GuestKernel> = std::fs::read_dir(cache)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let release = e.file_name().to_string_lossy().into_owned();
                let k = GuestKernel {
                    release,
                    root: e.path(),
                };
                (k.image().is_file() && k.modules_dir().join("modules.dep").is_file()).then_some(k)
            })
            .collect();
        found.sort_by(|a, b| a.release.cmp(&b.release));
        found.pop().ok_or_else(|| VmError::NoKernel {
            cache: cache.display().to_string(),
        })
    }

    pub fn image(&self) -> PathBuf {
        self.root
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }

    /// `modules.dep`: module name → (path relative to the modules dir, its dependencies' paths).
    fn dep_table(&self) -> Result<BTreeMap<String, (String, Vec<String>)>, VmError> {
        let path = self.modules_dir().join("modules.dep");
        let text = std::fs::read_to_string(&path).map_err(|e| VmError::Io {
            what: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(m, deps)| {
                let deps = deps.split_whitespace().map(str::to_string).collect();
                (module_name(m), (m.to_string(), deps))
            })
            .collect())
    }

    /// The module files to ship (relative to the modules dir): every module under
    /// `kernel/net/` and [`BOOT_MODULES`], with their dependencies; and the boot modules in
    /// load order (dependencies first).
    pub fn module_plan(&self) -> Result<(BTreeSet<String>, Vec<String>), VmError> {
        let table = self.dep_table()?;
        let by_path: BTreeMap<&str, &Vec<String>> =
            table.values().map(|(p, d)| (p.as_str(), d)).collect();
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for m in BOOT_MODULES {
            let (path, _) = table.get(*m).ok_or_else(|| VmError::MissingModule {
                module: m.to_string(),
                kernel: self.release.clone(),
            })?;
            visit(path, &by_path, &mut seen, &mut order);
        }
        let mut ship: BTreeSet<String> = order.iter().cloned().collect();
        for (path, deps) in table.values() {
            if path.starts_with("kernel/net/") {
                ship.insert(path.clone());
                ship.extend(deps.iter().cloned());
            }
        }
        Ok((ship, order))
    }
}

/// Depth-first: a module's dependencies before the module.
fn visit(
    path: &str,
    by_path: &BTreeMap<&str, &Vec<String>>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<String>,
) {
    if !seen.insert(path.to_string()) {
        return;
    }
    for d in by_path.get(path).map(|d| d.as_slice()).unwrap_or_default() {
        visit(d, by_path, seen, order);
    }
    order.push(path.to_string());
}

/// `kernel/drivers/net/veth.ko` → `veth` (module names use `_` for `-`).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_load_first_and_once() {
        let dir = std::env::temp_dir().join(format!("nlab-vmk-{}", std::process::id()));
        let k = GuestKernel {
            release: "1.0-test".into(),
            root: dir.clone(),
        };
        std::fs::create_dir_all(k.modules_dir()).unwrap();
        std::fs::create_dir_all(dir.join("boot")).unwrap();
        std::fs::write(k.image(), b"").unwrap();
        let mut dep = String::from(
            "kernel/lib/a.ko:\nkernel/lib/b-x.ko: kernel/lib/a.ko\nkernel/net/c.ko: kernel/lib/b-x.ko kernel/lib/a.ko\n",
        );
        for m in BOOT_MODULES {
            dep.push_str(&format!("kernel/drivers/{m}.ko: kernel/net/c.ko\n"));
        }
        std::fs::write(k.modules_dir().join("modules.dep"), dep).unwrap();
        let (ship, order) = k.module_plan().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            &order[..3],
            ["kernel/lib/a.ko", "kernel/lib/b-x.ko", "kernel/net/c.ko"]
        );
        assert_eq!(order.len(), 3 + BOOT_MODULES.len());
        assert!(ship.contains("kernel/lib/a.ko"));
        assert_eq!(module_name("kernel/lib/b-x.ko"), "b_x");
    }

    #[test]
    fn missing_cache_names_setup() {
        let e = GuestKernel::find_in(Path::new("/nonexistent/nlab")).unwrap_err();
        assert!(e.to_string().contains("scripts/setup.sh"), "{e}");
    }
}
