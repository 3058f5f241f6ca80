//! An agent's readiness as Kubernetes would see it: `GET /readyz` on its metrics endpoint,
//! from inside the node's namespace (the endpoint is on that namespace's loopback).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::netns;

/// True when the agent in `netns` answers `/readyz` with 200.
pub fn agent_ready(netns: &str, addr: SocketAddr) -> bool {
    netns::run_in(netns, move || {
        let t = Duration::from_secs(1);
        let Ok(mut s) = TcpStream::connect_timeout(&addr, t) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(t));
        if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut head = [0u8; 32];
        let n = s.read(&mut head).unwrap_or(0);
        String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200")
    })
    .unwrap_or(false)
}
