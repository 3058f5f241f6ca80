//! A continuous TCP flow between two pods: one established connection carrying a paced
//! stream of numbered records, so a fault shows as TCP shows it to an application — a stall
//! while segments are retransmitted, or the connection breaking (reset, timeout, closed).
//! The receiver stamps each record's arrival; every connection error is logged with its
//! time, and the sender reconnects after one so the run still measures what follows.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netns::{self, NetnsError};

/// Bytes per record: the sequence number and padding (small, so one record is one segment).
const RECORD: usize = 64;

/// What the flow saw, in offsets from its epoch.
#[derive(Debug, Default)]
struct Log {
    /// Arrival time of each record at the receiver.
    progress: Vec<Duration>,
    /// Connection errors on either end: time and what happened.
    errors: Vec<(Duration, String)>,
    /// Connections the sender opened (1 when nothing broke).
    connections: u64,
}

pub struct TcpFlow {
    stop: Arc<AtomicBool>,
    pub epoch: Instant,
    log: Arc<Mutex<Log>>,
    threads: Vec<JoinHandle<Result<(), NetnsError>>>,
}

fn note(log: &Mutex<Log>, epoch: Instant, what: String) {
    tracing::warn!(what = %what, at_ms = epoch.elapsed().as_millis() as u64, "tcp flow error");
    log.lock()
        .expect("tcp log")
        .errors
        .push((epoch.elapsed(), what));
}

impl TcpFlow {
    /// Listens in `dst_netns` on `dst:port`, then connects from `src_netns` and sends
    /// `rate_pps` records a second until dropped or stopped.
    pub fn start(
        src_netns: &str,
        dst_netns: &str,
        dst: Ipv4Addr,
        port: u16,
        rate_pps: u32,
    ) -> Result<TcpFlow, NetnsError> {
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Log::default()));
        let listener = netns::run_in(dst_netns, move || {
            TcpListener::bind(SocketAddr::from((dst, port)))
        })?
        .map_err(|source| NetnsError::Open {
            path: format!("tcp {dst}:{port}").into(),
            source,
        })?;
        listener.set_nonblocking(true).ok();
        let (flag, l) = (stop.clone(), log.clone());
        let receiver = std::thread::spawn(move || {
            receive(listener, &flag, &l, epoch);
            Ok(())
        });
        let (flag, l) = (stop.clone(), log.clone());
        let interval = Duration::from_secs_f64(1.0 / rate_pps.max(1) as f64);
        let sender = netns::spawn_in(src_netns, move || {
            send(SocketAddr::from((dst, port)), interval, &flag, &l, epoch)
        });
        Ok(TcpFlow {
            stop,
            epoch,
            log,
            threads: vec![receiver, sender],
        })
    }

    /// Records received so far.
    pub fn received(&self) -> u64 {
        self.log.lock().expect("tcp log").progress.len() as u64
    }

    /// Arrival times of the records, sorted.
    pub fn progress(&self) -> Vec<Duration> {
        let mut p = self.log.lock().expect("tcp log").progress.clone();
        p.sort_unstable();
        p
    }

    /// Connection errors (either end) in `[from, to]`.
    pub fn errors_between(&self, from: Duration, to: Duration) -> Vec<(Duration, String)> {
        self.log
            .lock()
            .expect("tcp log")
            .errors
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .cloned()
            .collect()
    }

    pub fn connections(&self) -> u64 {
        self.log.lock().expect("tcp log").connections
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for TcpFlow {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Accepts connections and stamps every whole record that arrives.
fn receive(listener: TcpListener, stop: &AtomicBool, log: &Mutex<Log>, epoch: Instant) {
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match listener.accept() {
            Ok((c, _)) => c,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        conn.set_nonblocking(false).ok();
        conn.set_read_timeout(Some(Duration::from_millis(100))).ok();
        let mut buf = [0u8; RECORD];
        let mut have = 0;
        while !stop.load(Ordering::Relaxed) {
            match conn.read(&mut buf[have..]) {
                Ok(0) if stop.load(Ordering::Relaxed) => break,
                Ok(0) => {
                    note(
                        log,
                        epoch,
                        "receiver: connection closed by the sender".into(),
                    );
                    break;
                }
                Ok(n) => {
                    have += n;
                    if have == RECORD {
                        have = 0;
                        log.lock().expect("tcp log").progress.push(epoch.elapsed());
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    note(log, epoch, format!("receiver: {e}"));
                    break;
                }
            }
        }
    }
}

/// Connects and writes paced records; after an error, reconnects (counting it).
fn send(dst: SocketAddr, interval: Duration, stop: &AtomicBool, log: &Mutex<Log>, epoch: Instant) {
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match TcpStream::connect_timeout(&dst, Duration::from_secs(2)) {
            Ok(c) => c,
            Err(e) => {
                note(log, epoch, format!("sender: connect: {e}"));
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        // One record per segment, sent when written (no coalescing hiding a stall).
        conn.set_nodelay(true).ok();
        conn.set_write_timeout(Some(Duration::from_secs(5))).ok();
        log.lock().expect("tcp log").connections += 1;
        let start = Instant::now();
        let mut n: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            let due = start + interval * n;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let mut record = [0u8; RECORD];
            record[..8].copy_from_slice(&seq.to_be_bytes());
            if let Err(e) = conn.write_all(&record) {
                note(log, epoch, format!("sender: {e}"));
                break;
            }
            seq += 1;
            n += 1;
        }
    }
}
