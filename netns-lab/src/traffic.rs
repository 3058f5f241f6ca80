//! Test traffic between pods, in Rust, with sockets opened inside the pods' namespaces:
//! a TCP echo exchange, and a paced UDP stream whose receiver records every sequence number's
//! arrival (for failover gaps and loss).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::judge::Datagram;
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
/// the sender stamps each send and the receiver each arrival with a monotonic clock shared
/// with the event runner (offsets from the stream's epoch).
pub struct UdpStream {
    stop: Arc<AtomicBool>,
    pub epoch: Instant,
    arrivals: Arc<Mutex<Vec<(u64, Duration)>>>,
    /// Send time of each sequence number.
    sent: Arc<Mutex<Vec<Duration>>>,
    sender: Option<std::thread::JoinHandle<Result<(), NetnsError>>>,
    receiver: Option<std::thread::JoinHandle<Result<(), NetnsError>>>,
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
        let sent = Arc::new(Mutex::new(Vec::new()));
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
        let (flag, log) = (stop.clone(), sent.clone());
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
                let at = epoch.elapsed();
                let _ = s.send_to(&payload, (dst, port));
                log.lock().expect("sent").push(at);
                seq += 1;
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

    pub fn received(&self) -> u64 {
        self.arrivals.lock().expect("arrivals").len() as u64
    }

    /// Arrival times, sorted.
    pub fn arrivals(&self) -> Vec<Duration> {
        let mut t: Vec<Duration> = self
            .arrivals
            .lock()
            .expect("arrivals")
            .iter()
            .map(|a| a.1)
            .collect();
        t.sort_unstable();
        t
    }

    /// Every datagram sent so far, in sequence order, with its arrival if it came.
    pub fn datagrams(&self) -> Vec<Datagram> {
        let sent = self.sent.lock().expect("sent").clone();
        let mut received: Vec<Option<Duration>> = vec![None; sent.len()];
        for (seq, at) in self.arrivals.lock().expect("arrivals").iter() {
            if let Some(r) = received.get_mut(*seq as usize) {
                r.get_or_insert(*at);
            }
        }
        sent.into_iter()
            .zip(received)
            .map(|(sent, received)| Datagram { sent, received })
            .collect()
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
