//! Packet captures on lab links (`tcpdump -w` inside a router namespace) and a classifier for
//! what was on the wire: WireGuard, VXLAN, GENEVE, IPIP or plain IPv4.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "tcpdump on {netns}/{dev}: {detail} (install: apt-get install -y --no-install-recommends tcpdump)"
    )]
    Start {
        netns: String,
        dev: String,
        detail: String,
    },
    #[error("reading capture {path}: {detail}")]
    Read { path: PathBuf, detail: String },
}

/// An IPv4 packet header's addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Addrs {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
}

/// What one captured frame carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Wire {
    /// WireGuard message (type 1–4) and its UDP payload length.
    WireGuard {
        outer: Addrs,
        msg_type: u8,
        len: usize,
    },
    Vxlan {
        outer: Addrs,
        inner: Option<Addrs>,
    },
    Geneve {
        outer: Addrs,
        inner: Option<Addrs>,
    },
    Ipip {
        outer: Addrs,
        inner: Option<Addrs>,
    },
    Plain {
        ip: Addrs,
        len: usize,
    },
}

impl Wire {
    pub fn outer(&self) -> Addrs {
        match *self {
            Wire::WireGuard { outer, .. }
            | Wire::Vxlan { outer, .. }
            | Wire::Geneve { outer, .. }
            | Wire::Ipip { outer, .. } => outer,
            Wire::Plain { ip, .. } => ip,
        }
    }

    /// The pod-level addresses visible on the wire (inner header, or the plain header).
    pub fn visible_inner(&self) -> Option<Addrs> {
        match *self {
            Wire::Vxlan { inner, .. } | Wire::Geneve { inner, .. } | Wire::Ipip { inner, .. } => {
                inner
            }
            Wire::Plain { ip, .. } => Some(ip),
            Wire::WireGuard { .. } => None,
        }
    }

    pub fn encap_name(&self) -> &'static str {
        match self {
            Wire::WireGuard { .. } => "WireGuard",
            Wire::Vxlan { .. } => "VXLAN",
            Wire::Geneve { .. } => "GENEVE",
            Wire::Ipip { .. } => "IPIP",
            Wire::Plain { .. } => "None",
        }
    }
}

fn total_len(b: &[u8]) -> usize {
    b.get(2..4)
        .map(|x| u16::from_be_bytes([x[0], x[1]]) as usize)
        .unwrap_or(b.len())
}

fn ipv4(b: &[u8]) -> Option<(Addrs, &[u8])> {
    if b.len() < 20 || b[0] >> 4 != 4 {
        return None;
    }
    let ihl = ((b[0] & 0x0f) as usize) * 4;
    if b.len() < ihl {
        return None;
    }
    let a = Addrs {
        src: Ipv4Addr::new(b[12], b[13], b[14], b[15]),
        dst: Ipv4Addr::new(b[16], b[17], b[18], b[19]),
        proto: b[9],
    };
    Some((a, &b[ihl..]))
}

fn ethernet_ipv4(frame: &[u8]) -> Option<&[u8]> {
    if frame.len() < 14 {
        return None;
    }
    let (mut ethertype, mut off) = (u16::from_be_bytes([frame[12], frame[13]]), 14);
    if ethertype == 0x8100 && frame.len() >= 18 {
        ethertype = u16::from_be_bytes([frame[16], frame[17]]);
        off = 18;
    }
    (ethertype == 0x0800).then(|| &frame[off..])
}

/// `len` is the UDP payload length from the UDP header (captures are truncated).
fn is_wireguard(p: &[u8], len: usize) -> bool {
    if p.len() < 4 || len < 32 || p[1..4] != [0, 0, 0] {
        return false;
    }
    match p[0] {
        1 => len == 148,
        2 => len == 92,
        3 => len == 64,
        // Header (16) + encrypted packet + tag (16); boringtun does not pad to 16.
        4 => true,
        _ => false,
    }
}

/// Classifies one IPv4 packet.
pub fn classify_ip(packet: &[u8]) -> Option<Wire> {
    let (outer, rest) = ipv4(packet)?;
    match outer.proto {
        4 => Some(Wire::Ipip {
            outer,
            inner: ipv4(rest).map(|x| x.0),
        }),
        17 if rest.len() >= 8 => {
            let sport = u16::from_be_bytes([rest[0], rest[1]]);
            let dport = u16::from_be_bytes([rest[2], rest[3]]);
            let payload = &rest[8..];
            // Lengths from the headers: the capture keeps only the first bytes of a packet.
            let udp_len = (u16::from_be_bytes([rest[4], rest[5]]) as usize).saturating_sub(8);
            if dport == 4789 && payload.len() >= 8 {
                let inner = ethernet_ipv4(&payload[8..]).and_then(ipv4).map(|x| x.0);
                return Some(Wire::Vxlan { outer, inner });
            }
            if dport == 6081 && payload.len() >= 8 {
                let opt_len = ((payload[0] & 0x3f) as usize) * 4;
                let proto = u16::from_be_bytes([payload[2], payload[3]]);
                let body = payload.get(8 + opt_len..).unwrap_or_default();
                let inner = match proto {
                    0x6558 => ethernet_ipv4(body).and_then(ipv4).map(|x| x.0),
                    0x0800 => ipv4(body).map(|x| x.0),
                    _ => None,
                };
                return Some(Wire::Geneve { outer, inner });
            }
            if is_wireguard(payload, udp_len) && sport != 53 && dport != 53 {
                return Some(Wire::WireGuard {
                    outer,
                    msg_type: payload[0],
                    len: udp_len,
                });
            }
            Some(Wire::Plain {
                ip: outer,
                len: total_len(packet),
            })
        }
        _ => Some(Wire::Plain {
            ip: outer,
            len: total_len(packet),
        }),
    }
}

/// Reads an Ethernet pcap file (µs or ns timestamps, either byte order).
pub fn read_pcap(path: &Path) -> Result<Vec<Wire>, CaptureError> {
    let err = |detail: String| CaptureError::Read {
        path: path.into(),
        detail,
    };
    let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    if data.len() < 24 {
        return Ok(Vec::new());
    }
    let magic = u32::from_le_bytes(data[0..4].try_into().expect("4"));
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        other => return Err(err(format!("not a pcap file (magic {other:#x})"))),
    };
    let u32_at = |o: usize| {
        let b: [u8; 4] = data[o..o + 4].try_into().expect("4");
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let linktype = u32_at(20);
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let incl = u32_at(off + 8) as usize;
        let start = off + 16;
        let end = (start + incl).min(data.len());
        let frame = &data[start..end];
        let ip = match linktype {
            1 => ethernet_ipv4(frame),
            101 => Some(frame),
            _ => None,
        };
        if let Some(w) = ip.and_then(classify_ip) {
            out.push(w);
        }
        off = start + incl;
    }
    Ok(out)
}

/// A running capture; stop it to read what it saw.
pub struct Capture {
    child: Child,
    pub path: PathBuf,
    pub netns: String,
    pub dev: String,
}

impl Capture {
    /// Starts `tcpdump` on `dev` in `netns` (both directions) and waits until it listens.
    pub fn start(netns: &str, dev: &str, path: &Path) -> Result<Capture, CaptureError> {
        Self::start_directed(netns, dev, path, None)
    }

    /// Like [`Capture::start`], only packets leaving `dev` (`Some("out")`) or entering it
    /// (`Some("in")`). On a router's bridge port, "out" is what is delivered to the node.
    pub fn start_directed(
        netns: &str,
        dev: &str,
        path: &Path,
        direction: Option<&str>,
    ) -> Result<Capture, CaptureError> {
        let err = |detail: String| CaptureError::Start {
            netns: netns.into(),
            dev: dev.into(),
            detail,
        };
        let mut c = Command::new("ip");
        c.args([
            "netns",
            "exec",
            netns,
            "tcpdump",
            "-i",
            dev,
            "-n",
            "-U",
            "--immediate-mode",
        ])
        // Without immediate mode libpcap hands packets over in blocks up to a second
        // late, and the ones still in the ring when tcpdump stops are lost.
        .args(direction.map(|d| vec!["-Q", d]).unwrap_or_default())
        .args(["-s", "256", "-w"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        crate::signals::unblock_for_children(&mut c);
        let mut child = c.spawn().map_err(|e| err(e.to_string()))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            // Keep draining so tcpdump never blocks on a full pipe.
            for _ in lines {}
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        match rx.recv_timeout(deadline - Instant::now()) {
            Ok(l) if l.contains("listening on") => {}
            Ok(l) => {
                let _ = child.kill();
                return Err(err(l));
            }
            Err(_) => {
                let _ = child.kill();
                return Err(err("did not start listening within 5 s".into()));
            }
        }
        Ok(Capture {
            child,
            path: path.into(),
            netns: netns.into(),
            dev: dev.into(),
        })
    }

    /// Stops tcpdump (SIGTERM flushes the file) and parses the capture.
    pub fn finish(mut self) -> Result<Vec<Wire>, CaptureError> {
        // Let in-flight packets land before stopping.
        std::thread::sleep(Duration::from_millis(150));
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
        let r = read_pcap(&self.path);
        let _ = std::fs::remove_file(&self.path);
        r
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip_header(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h.extend_from_slice(payload);
        h
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    #[test]
    fn classifies_each_encapsulation() {
        let inner = ip_header(1, [10, 110, 0, 2], [10, 120, 0, 2], &[8, 0, 0, 0]);
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x08, 0x00]);
        eth.extend_from_slice(&inner);
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        vx.extend_from_slice(&eth);
        let pkt = ip_header(17, [10, 10, 0, 11], [10, 10, 0, 12], &udp(40000, 4789, &vx));
        let Some(Wire::Vxlan { inner: Some(a), .. }) = classify_ip(&pkt) else {
            panic!()
        };
        assert_eq!(a.dst, Ipv4Addr::new(10, 120, 0, 2));

        let mut gn = vec![0, 0, 0x65, 0x58, 0, 0, 1, 0];
        gn.extend_from_slice(&eth);
        let pkt = ip_header(17, [1, 1, 1, 1], [2, 2, 2, 2], &udp(40000, 6081, &gn));
        assert!(matches!(
            classify_ip(&pkt),
            Some(Wire::Geneve { inner: Some(_), .. })
        ));

        let pkt = ip_header(4, [1, 1, 1, 1], [2, 2, 2, 2], &inner);
        assert!(matches!(
            classify_ip(&pkt),
            Some(Wire::Ipip { inner: Some(_), .. })
        ));

        let mut wg = vec![4, 0, 0, 0];
        wg.extend_from_slice(&[0u8; 12 + 32]);
        let pkt = ip_header(17, [1, 1, 1, 1], [2, 2, 2, 2], &udp(51820, 51820, &wg));
        assert!(matches!(
            classify_ip(&pkt),
            Some(Wire::WireGuard { msg_type: 4, .. })
        ));

        // A UDP datagram that merely starts with 4 is not WireGuard unless its size fits.
        let pkt = ip_header(
            17,
            [1, 1, 1, 1],
            [2, 2, 2, 2],
            &udp(5000, 5001, &[4, 0, 0, 0, 1]),
        );
        assert!(matches!(classify_ip(&pkt), Some(Wire::Plain { .. })));
        assert!(matches!(classify_ip(&inner), Some(Wire::Plain { .. })));
    }
}
