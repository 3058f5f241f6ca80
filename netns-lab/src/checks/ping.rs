//! `ping` from inside a namespace, with its outcome parsed (not just the exit code).

use std::net::Ipv4Addr;

use crate::cmd;

/// What a ping run saw.
#[derive(Clone, Debug, PartialEq)]
pub struct PingOutcome {
    pub transmitted: u32,
    pub received: u32,
    /// "Frag needed" / "Message too long" was reported.
    pub frag_needed: bool,
    pub raw: String,
}

impl PingOutcome {
    pub fn ok(&self) -> bool {
        self.received > 0 && !self.frag_needed
    }
}

/// Options beyond destination and count.
#[derive(Clone, Copy, Debug, Default)]
pub struct PingOpts {
    /// ICMP payload size (`-s`).
    pub payload: Option<u32>,
    /// Set DF and never fragment locally (`-M do`).
    pub dont_fragment: bool,
    /// Seconds between packets (`-i`), default 0.2.
    pub interval: Option<f32>,
}

pub fn ping(netns: &str, dst: Ipv4Addr, count: u32, timeout_s: u32, opts: PingOpts) -> PingOutcome {
    let count_s = count.to_string();
    let wait_s = timeout_s.to_string();
    let interval = format!("{}", opts.interval.unwrap_or(0.2));
    let dst_s = dst.to_string();
    let mut args = vec!["-n", "-c", &count_s, "-w", &wait_s, "-i", &interval];
    let size;
    if let Some(p) = opts.payload {
        size = p.to_string();
        args.extend(["-s", &size]);
    }
    if opts.dont_fragment {
        args.extend(["-M", "do"]);
    }
    args.push(&dst_s);
    let mut full = vec!["netns", "exec", netns, "ping"];
    full.extend(args);
    let raw = match cmd::run("ip", &full) {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(cmd::CmdError::Failed { stderr, .. }) => stderr,
        Err(e) => e.to_string(),
    };
    parse(&raw)
}

fn parse(raw: &str) -> PingOutcome {
    let mut transmitted = 0;
    let mut received = 0;
    for line in raw.lines() {
        if let Some((tx, rest)) = line.split_once(" packets transmitted, ") {
            transmitted = tx.trim().parse().unwrap_or(0);
            received = rest
                .split_whitespace()
                .next()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
        }
    }
    let lower = raw.to_ascii_lowercase();
    PingOutcome {
        transmitted,
        received,
        frag_needed: lower.contains("frag needed") || lower.contains("message too long"),
        raw: raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counts_and_frag_needed() {
        let out = "PING 10.0.0.2 (10.0.0.2) 1473(1501) bytes of data.\nFrom 10.0.0.1 icmp_seq=1 Frag needed and DF set (mtu = 1500)\n\n--- 10.0.0.2 ping statistics ---\n1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms\n";
        let p = parse(out);
        assert_eq!((p.transmitted, p.received), (1, 0));
        assert!(p.frag_needed);
        assert!(!p.ok());
        let good = "--- x ping statistics ---\n3 packets transmitted, 3 received, 0% packet loss\n";
        assert!(parse(good).ok());
    }
}
