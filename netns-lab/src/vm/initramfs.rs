//! The guest's root file system: busybox for `/init`, the host's own lab tools and their
//! shared libraries (found with `ldd`), the CNI plugins, the cloud kernel's modules, this
//! `netns-lab` binary and the scenario file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::VmError;
use super::cpio::{Archive, Entry};
use super::kernel::GuestKernel;

/// Busybox applets `/init` uses (no `--install`: its self-link loops, and the host's real
/// `ip`/`tc`/`ping`/`sysctl` must win over busybox's look-alikes).
const APPLETS: &[&str] = &[
    "sh", "mount", "mkdir", "insmod", "modprobe", "poweroff", "cat", "tr", "echo", "hostname",
    "sleep", "ln", "date",
];

/// Where the guest finds the tools (first on its PATH; `/init` calls `ip` by this path).
pub const TOOL_DIR: &str = "/usr/sbin";

/// Tools the lab (and the agent, and the CNI plugins) run, by name on the host's PATH, and
/// whether the lab cannot work without them.
const TOOLS: &[(&str, bool)] = &[
    ("ip", true),
    ("tc", true),
    ("bridge", false),
    ("nft", true),
    ("sysctl", true),
    ("tcpdump", true),
    ("ping", true),
    ("wg", true),
    ("iptables", true),
    ("iptables-save", false),
    ("iptables-restore", false),
    ("ip6tables", false),
    ("ip6tables-save", false),
    ("ip6tables-restore", false),
    ("iperf3", false),
    // Only used when the guest kernel's WireGuard is not (the agent prefers the kernel's).
    ("boringtun-cli", false),
];

/// Host files copied as they are when present (names, services, protocol numbers, iproute2's
/// tables, and the users tcpdump drops privileges to).
const ETC: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/protocols",
    "/etc/services",
    "/etc/nsswitch.conf",
    "/etc/iproute2",
    "/usr/share/iproute2",
    "/usr/lib/x86_64-linux-gnu/xtables",
];

/// What goes into the initramfs besides the fixed tools.
pub struct GuestPayload<'a> {
    pub kernel: &'a GuestKernel,
    /// The `netns-lab` binary to run inside (normally this very executable).
    pub lab_binary: &'a Path,
    /// The scenario file, placed at `/lab/<file name>`.
    pub scenario: &'a Path,
    /// `/init`, rendered.
    pub init_script: String,
    /// Boot modules in load order, relative to the modules directory.
    pub modules_order: &'a [String],
    /// Every module file to ship, relative to the modules directory.
    pub modules_ship: &'a BTreeSet<String>,
}

fn io_err(what: &Path, e: impl std::fmt::Display) -> VmError {
    VmError::Io {
        what: what.display().to_string(),
        detail: e.to_string(),
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/sbin"),
            PathBuf::from("/sbin"),
            PathBuf::from("/root/.cargo/bin"),
        ])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Shared libraries of an ELF file, as absolute paths (`ldd`; nothing for static binaries).
fn libraries(bin: &Path) -> Result<Vec<PathBuf>, VmError> {
    let out = std::process::Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| io_err(Path::new("ldd"), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Adds a host file at the same path, and every library it needs.
fn add_elf(
    a: &mut Archive,
    guest: &str,
    host: &Path,
    seen: &mut BTreeSet<PathBuf>,
) -> Result<(), VmError> {
    a.add(
        guest,
        Entry::HostFile {
            source: host.to_path_buf(),
            mode: 0o755,
        },
    );
    for lib in libraries(host)? {
        if seen.insert(lib.clone()) {
            a.add(
                &lib.to_string_lossy(),
                Entry::HostFile {
                    source: lib.clone(),
                    mode: 0o755,
                },
            );
        }
    }
    Ok(())
}

/// Adds a host file or directory tree at the same path (ELF files with their libraries).
fn add_tree(a: &mut Archive, host: &Path, seen: &mut BTreeSet<PathBuf>) -> Result<(), VmError> {
    if host.is_dir() {
        for e in std::fs::read_dir(host)
            .map_err(|e| io_err(host, e))?
            .flatten()
        {
            add_tree(a, &e.path(), seen)?;
        }
    } else if host.extension().is_some_and(|x| x == "so") {
        add_elf(a, &host.to_string_lossy(), host, seen)?;
    } else if host.is_file() {
        a.add(
            &host.to_string_lossy(),
            Entry::HostFile {
                source: host.to_path_buf(),
                mode: 0o644,
            },
        );
    }
    Ok(())
}

/// Builds the archive. Fails naming the missing tool and the command that installs it.
pub fn build(p: &GuestPayload<'_>) -> Result<Archive, VmError> {
    let mut a = Archive::default();
    let mut seen = BTreeSet::new();
    a.add(
        "/init",
        Entry::Bytes {
            data: p.init_script.clone().into_bytes(),
            mode: 0o755,
        },
    );
    let busybox = which("busybox").ok_or_else(|| VmError::MissingTool {
        tool: "busybox".into(),
    })?;
    a.add(
        "/bin/busybox",
        Entry::HostFile {
            source: busybox,
            mode: 0o755,
        },
    );
    for applet in APPLETS {
        a.add(&format!("/bin/{applet}"), Entry::Symlink("busybox".into()));
    }
    // The kernel's module autoloader runs this (see /proc/sys/kernel/modprobe in /init).
    a.add("/sbin/modprobe", Entry::Symlink("/bin/busybox".into()));
    for (tool, required) in TOOLS {
        match which(tool) {
            Some(host) => {
                // All in one directory, first on the guest's PATH. Multi-call binaries
                // (xtables) dispatch on their own name: keep it.
                let real = std::fs::canonicalize(&host).map_err(|e| io_err(&host, e))?;
                add_elf(&mut a, &format!("{TOOL_DIR}/{tool}"), &real, &mut seen)?;
            }
            None if *required => {
                return Err(VmError::MissingTool {
                    tool: tool.to_string(),
                });
            }
            None => {}
        }
    }
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        let host = Path::new(crate::pods::CNI_BIN_DIR).join(plugin);
        if !host.is_file() {
            return Err(VmError::MissingTool {
                tool: format!("CNI plugin {}", host.display()),
            });
        }
        add_elf(&mut a, &host.to_string_lossy(), &host, &mut seen)?;
    }
    for path in ETC {
        add_tree(&mut a, Path::new(path), &mut seen)?;
    }
    add_elf(&mut a, "/usr/bin/netns-lab", p.lab_binary, &mut seen)?;
    let scenario_name = p
        .scenario
        .file_name()
        .ok_or_else(|| io_err(p.scenario, "not a file"))?;
    a.add(
        &format!("/lab/{}", scenario_name.to_string_lossy()),
        Entry::HostFile {
            source: p.scenario.to_path_buf(),
            mode: 0o644,
        },
    );
    let mods = p.kernel.modules_dir();
    let guest_mods = format!("/lib/modules/{}", p.kernel.release);
    for rel in p.modules_ship {
        a.add(
            &format!("{guest_mods}/{rel}"),
            Entry::HostFile {
                source: mods.join(rel),
                mode: 0o644,
            },
        );
    }
    for index in [
        "modules.dep",
        "modules.alias",
        "modules.symbols",
        "modules.builtin",
        "modules.softdep",
        "modules.order",
    ] {
        if mods.join(index).is_file() {
            a.add(
                &format!("{guest_mods}/{index}"),
                Entry::HostFile {
                    source: mods.join(index),
                    mode: 0o644,
                },
            );
        }
    }
    let order: String = p
        .modules_order
        .iter()
        .map(|m| format!("{guest_mods}/{m}\n"))
        .collect();
    a.add(
        "/lab/modules.load",
        Entry::Bytes {
            data: order.into_bytes(),
            mode: 0o644,
        },
    );
    Ok(a)
}
