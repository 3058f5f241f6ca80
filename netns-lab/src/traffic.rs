//! Test traffic between pods, in Rust, with sockets opened inside the pods' namespaces:
//! a TCP echo exchange, and a paced UDP stream whose receiver records every sequence number's
//! arrival (for failover gaps and loss).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::netns::{self, NetnsError};

/// Port of every pod's TCP echo responder.
pub const ECHO_PORT: u16 = 7007;

/// A TCP echo responder inside a pod; stops when dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
}

impl EchoServer {
    pub fn start(pod_netns: &str, ip: Ipv4Addr) -> Result<EchoServer, NetnsError> {
        let listener = netns::run_in(pod_netns, move || {
            TcpListener::bind(SocketAddr::from((ip, ECHO_PORT)))
        })?
        .map_err(|source| NetnsError::Open {
            path: format!("tcp {ip}:{ECHO_PORT}").into(),
            source,
        })?;
        listener.set_nonblocking(true).ok();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        std::thread::spawn(move || {
                            s.set_nonblocking(false).ok();
                            s.set_read_timeout(Some(Duration::from_secs(30))).ok();
                            let mut buf = [0u8; 65536];
                            while let Ok(n) = s.read(&mut buf) {
                                if n == 0 || s.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(EchoServer { stop })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Connects from `src_netns` to `dst:ECHO_PORT`, sends a message naming both ends and checks
/// the echo is byte-identical.
pub fn tcp_exchange(src_netns: &str, dst: Ipv4Addr, timeout: Duration) -> Result<(), String> {
    let tag = format!("netns-lab {src_netns} -> {dst} {:?}", Instant::now());
    netns::run_in(src_netns, move || -> Result<(), String> {
        let mut s = TcpStream::connect_timeout(&SocketAddr::from((dst, ECHO_PORT)), timeout)
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(timeout)).ok();
        s.write_all(tag.as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut got = vec![0u8; tag.len()];
        s.read_exact(&mut got).map_err(|e| format!("echo: {e}"))?;
        if got != tag.as_bytes() {
            return Err("echo differs from what was sent".into());
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?
}

/// A paced UDP stream from one pod to another. Each datagram carries its sequence number;
/// the receiver stamps arrivals with a monotonic clock shared with the event runner.
pub struct UdpStream {
    stop: Arc<AtomicBool>,
    pub epoch: Instant,
    arrivals: Arc<Mutex<Vec<(u64, Duration)>>>,
    sent: Arc<Mutex<u64>>,
    sender: Option<std::thread::JoinHandle<Result<(), NetnsError>>>,
    receiver: Option<std::thread::JoinHandle<Result<(), NetnsError>>>,
}

/// What a stream saw after some instant.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StreamStats {
    pub sent: u64,
    pub received: u64,
    /// Sequence numbers sent after the instant and never received.
    pub lost_after: u64,
    /// The first few lost sequence numbers' send times, relative to the instant (to tell
    /// what a loss lines up with).
    pub lost_at: Vec<Duration>,
    /// The most consecutive sequence numbers lost (an outage loses a run; random link loss
    /// loses isolated datagrams).
    pub longest_loss_run: u64,
    /// Datagrams sent in the window (settled ones).
    pub expected: u64,
    /// Longest time between two consecutive arrivals after the instant.
    pub max_gap_ms: f64,
}

impl UdpStream {
    pub fn start(
        src_netns: &str,
        dst_netns: &str,
        dst: Ipv4Addr,
        port: u16,
        rate_pps: u32,
    ) -> Result<UdpStream, NetnsError> {
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(0u64));
        let sock = netns::run_in(dst_netns, move || {
            UdpSocket::bind(SocketAddr::from((dst, port)))
        })?
        .map_err(|source| NetnsError::Open {
            path: format!("udp {dst}:{port}").into(),
            source,
        })?;
        sock.set_read_timeout(Some(Duration::from_millis(50))).ok();
        let (flag, arr) = (stop.clone(), arrivals.clone());
        let receiver = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !flag.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf)
                    && n >= 8
                {
                    let seq = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                    arr.lock().expect("arrivals").push((seq, epoch.elapsed()));
                }
            }
            Ok(())
        });
        let (flag, count) = (stop.clone(), sent.clone());
        let interval = Duration::from_secs_f64(1.0 / rate_pps.max(1) as f64);
        let sender = netns::spawn_in(src_netns, move || {
            let Ok(s) = UdpSocket::bind("0.0.0.0:0") else {
                return;
            };
            let mut seq: u64 = 0;
            let start = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                let due = start + interval * seq as u32;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let mut payload = [0u8; 32];
                payload[..8].copy_from_slice(&seq.to_be_bytes());
                let _ = s.send_to(&payload, (dst, port));
                seq += 1;
                *count.lock().expect("count") = seq;
            }
        });
        Ok(UdpStream {
            stop,
            epoch,
            arrivals,
            sent,
            sender: Some(sender),
            receiver: Some(receiver),
        })
    }

    /// Time since the stream's epoch (to anchor events).
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    pub fn received(&self) -> u64 {
        self.arrivals.lock().expect("arrivals").len() as u64
    }

    /// Statistics for arrivals from `from` (relative to the epoch) up to now.
    pub fn stats_since(&self, from: Duration, rate_pps: u32) -> StreamStats {
        let arrivals = self.arrivals.lock().expect("arrivals").clone();
        let sent = *self.sent.lock().expect("sent");
        // Sequence numbers sent after `from` (the sender is paced from the epoch).
        let first_seq = (from.as_secs_f64() * rate_pps as f64) as u64;
        let mut got: Vec<u64> = arrivals
            .iter()
            .map(|a| a.0)
            .filter(|s| *s >= first_seq)
            .collect();
        got.sort_unstable();
        got.dedup();
        // The last 200 ms of sequence numbers may still be in flight.
        let settled = sent.saturating_sub(rate_pps as u64 / 5);
        let expected = settled.saturating_sub(first_seq);
        let lost = expected.saturating_sub(got.iter().filter(|s| **s < settled).count() as u64);
        let lost_at: Vec<Duration> = (first_seq..settled)
            .filter(|s| got.binary_search(s).is_err())
            .take(5)
            .map(|s| {
                Duration::from_secs_f64(s as f64 / rate_pps.max(1) as f64).saturating_sub(from)
            })
            .collect();
        let mut longest_loss_run = 0u64;
        let mut run = 0u64;
        for seq in first_seq..settled {
            if got.binary_search(&seq).is_err() {
                run += 1;
                longest_loss_run = longest_loss_run.max(run);
            } else {
                run = 0;
            }
        }
        let mut times: Vec<Duration> = arrivals.iter().map(|a| a.1).collect();
        times.sort();
        // The gap that spans `from` counts: the last arrival before it starts the outage.
        let start_idx = times.iter().rposition(|t| *t < from).unwrap_or(0);
        let mut max_gap = times[start_idx.min(times.len().saturating_sub(1))..]
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        // A stream that stopped and never came back: the gap runs until now.
        if let Some(last) = times.last() {
            max_gap = max_gap.max(self.epoch.elapsed().saturating_sub(*last));
        }
        StreamStats {
            sent,
            received: arrivals.len() as u64,
            lost_after: lost,
            lost_at,
            longest_loss_run,
            expected,
            max_gap_ms: max_gap.as_secs_f64() * 1000.0,
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.sender.take() {
            let _ = h.join();
        }
        if let Some(h) = self.receiver.take() {
            let _ = h.join();
        }
    }
}

impl Drop for UdpStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
