//! Helpers of tests/netns_ebpf.rs: a private bpffs, running the eBPF dataplane inside a
//! namespace, and sending and counting datagrams.

use std::collections::{BTreeMap, BTreeSet};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use unbounded_net::core::dataplane::NodeDataplane;
use unbounded_net::node::ebpf::{EbpfConfig, EbpfDataplane};
use unbounded_net::node::{KernelOp, Reconciler};

use crate::netns::{Netns, report_skip};

/// A private BPF filesystem for one test's pins; unmounted and removed on drop.
pub struct BpfFs(pub PathBuf);

impl BpfFs {
    pub fn new(tag: &str) -> BpfFs {
        let path = PathBuf::from(format!("/run/unet-bpf-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount bpffs at {}", path.display());
        BpfFs(path)
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

pub fn in_ns<T>(ns: &Netns, f: impl std::future::Future<Output = T>) -> T {
    ns.enter(|| futures::executor::block_on(f))
}

pub fn connect(ns: &Netns, fs: &BpfFs) -> Reconciler<EbpfDataplane> {
    let cfg = EbpfConfig {
        pin_dir: fs.0.join(&ns.name),
        wireguard_device: "unwgunused".into(),
    };
    let dp = in_ns(ns, EbpfDataplane::connect(&cfg)).expect("load the eBPF dataplane");
    Reconciler::new(dp, "unwgunused")
}

pub fn reconcile(
    ns: &Netns,
    r: &mut Reconciler<EbpfDataplane>,
    plan: &NodeDataplane,
    down: &[&str],
) -> Vec<KernelOp> {
    let down: BTreeSet<String> = down.iter().map(|s| s.to_string()).collect();
    let rep = in_ns(ns, r.reconcile(plan, &down)).unwrap();
    assert!(rep.apply.failures.is_empty(), "{:?}", rep.apply.failures);
    rep.ops
}

/// Sends one datagram per source port from the node to 10.250.0.1:7000 and returns which
/// gateway received each port.
pub fn spray(
    n: &Netns,
    gws: &[(&str, &UdpSocket)],
    ports: std::ops::Range<u16>,
) -> BTreeMap<u16, String> {
    spray_from(n, "10.244.70.1", "10.250.0.1:7000", gws, ports)
}

/// [`spray`] from the pod address `from` to `to`.
pub fn spray_from(
    n: &Netns,
    from: &str,
    to: &str,
    gws: &[(&str, &UdpSocket)],
    ports: std::ops::Range<u16>,
) -> BTreeMap<u16, String> {
    for port in ports.clone() {
        let s = n.enter(|| UdpSocket::bind((from, port)).unwrap());
        s.send_to(&port.to_be_bytes(), to).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut seen = BTreeMap::new();
    let mut buf = [0u8; 16];
    for (name, sock) in gws {
        while let Ok((_, from)) = sock.recv_from(&mut buf) {
            let prev = seen.insert(from.port(), name.to_string());
            assert!(prev.is_none(), "port {} reached two gateways", from.port());
        }
    }
    let lost: Vec<u16> = ports.filter(|p| !seen.contains_key(p)).collect();
    assert!(lost.is_empty(), "flows from ports {lost:?} never arrived");
    seen
}

/// Sends exactly one UDP datagram from the node's pod address (a dropped one fails `send_to`
/// with ENOBUFS, which is ignored: the counters say what happened).
pub fn one_datagram(n: &Netns, to: &str) {
    let s = n.enter(|| UdpSocket::bind("10.244.70.1:0").unwrap());
    let _ = s.send_to(b"x", (to, 9));
}

/// Attaches to an existing TUN device (`TUNSETIFF`, no packet-info header), so packets
/// handed to it can be read.
pub fn attach_tun(name: &str) -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .unwrap();
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    // IFF_TUN | IFF_NO_PI
    ifr[16..18].copy_from_slice(&(0x0001u16 | 0x1000).to_ne_bytes());
    // Safety: TUNSETIFF reads and writes a struct ifreq, which `ifr` is large enough for.
    let rc = unsafe { nix::libc::ioctl(f.as_raw_fd(), 0x400454ca, ifr.as_mut_ptr()) };
    assert_eq!(
        rc,
        0,
        "TUNSETIFF {name}: {}",
        std::io::Error::last_os_error()
    );
    f
}

/// The next packet from an attached TUN (waits up to 2 s).
pub fn read_packet(tun: &std::fs::File) -> Vec<u8> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    // Safety: fcntl on a file descriptor this function borrows.
    unsafe {
        let fl = nix::libc::fcntl(tun.as_raw_fd(), nix::libc::F_GETFL);
        nix::libc::fcntl(
            tun.as_raw_fd(),
            nix::libc::F_SETFL,
            fl | nix::libc::O_NONBLOCK,
        );
    }
    let mut buf = vec![0u8; 2048];
    for _ in 0..200 {
        match (&*tun).read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return buf;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("read the TUN device: {e}"),
        }
    }
    panic!("no packet reached the device within 2 s");
}

pub fn ping(n: &Netns, from: &str, to: &str) -> bool {
    n.try_sh(&format!("ping -c 1 -W 1 -I {from} {to}"))
}

pub fn skip_without_btf(test: &str) -> bool {
    if std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return false;
    }
    report_skip(&format!(
        "{test}: kernel without BTF cannot run the eBPF dataplane"
    ));
    true
}

/// Datagrams waiting on each socket (drains them).
pub fn drain_counts(socks: &[UdpSocket]) -> Vec<usize> {
    let mut buf = [0u8; 2048];
    socks
        .iter()
        .map(|s| std::iter::from_fn(|| s.recv_from(&mut buf).ok()).count())
        .collect()
}

/// Creates and pins an LPM-trie map with the 8-slot value of earlier builds (264 bytes).
pub fn pin_old_layout_map(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries,
    // map_flags (BPF_F_NO_PREALLOC, which LPM tries require).
    let mut attr = [0u32; 32];
    attr[..5].copy_from_slice(&[11, 8, 264, 65_536, 1]);
    // Safety: bpf(2) reads `size` bytes of the attribute union from a buffer that long.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_bpf, 0, attr.as_ptr(), 128) };
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // BPF_OBJ_PIN: pathname (u64 pointer), bpf_fd.
    let mut pin = [0u64; 16];
    pin[0] = cpath.as_ptr() as u64;
    pin[1] = fd as u64;
    // Safety: as above; `cpath` outlives the call.
    let rc = unsafe { nix::libc::syscall(nix::libc::SYS_bpf, 6, pin.as_ptr(), 128) };
    assert_eq!(rc, 0, "BPF_OBJ_PIN: {}", std::io::Error::last_os_error());
    // Safety: closing the descriptor created above; the pin keeps the map.
    unsafe { nix::libc::close(fd as i32) };
}
