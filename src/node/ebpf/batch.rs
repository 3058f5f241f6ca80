//! Route writes in batches: many rtnetlink requests in one `send`, only errors and the last
//! request acknowledged.
//!
//! The kernel handles every request of a datagram inside the `send` call, in order, carrying
//! on past failures, so one round trip writes a whole batch. Going through the rtnetlink
//! connection task instead costs a request, a reply and two cross-thread wake-ups per route,
//! which made 10,000 anchor routes about eight times the cost of their map values.

use std::collections::BTreeMap;

use ipnet::IpNet;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// Requests per datagram. Each failed request queues an error of about 1 KiB (socket
/// accounting) on the receive buffer, whose default is 208 KiB: a batch that fails entirely
/// must still fit, or the errors would be lost.
const BATCH: usize = 64;
const ESRCH: i32 = 3;

/// One route write.
#[derive(Clone, Debug)]
pub enum RouteWrite {
    /// `ip route replace`.
    Replace(IpNet, RouteMessage),
    /// `ip route del`; an absent route is fine.
    Delete(IpNet, RouteMessage),
}

impl RouteWrite {
    pub fn prefix(&self) -> IpNet {
        match self {
            RouteWrite::Replace(p, _) | RouteWrite::Delete(p, _) => *p,
        }
    }
}

/// A blocking rtnetlink socket in the network namespace of the thread that opened it.
pub struct RouteWriter {
    socket: Socket,
    seq: u32,
}

impl RouteWriter {
    pub fn open() -> Result<Self, String> {
        let mut socket =
            Socket::new(NETLINK_ROUTE).map_err(|e| format!("open a netlink socket: {e}"))?;
        socket
            .bind_auto()
            .map_err(|e| format!("bind a netlink socket: {e}"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| format!("connect a netlink socket: {e}"))?;
        // Errors carry only the failed request's header back, not the whole request.
        let _ = socket.set_cap_ack(true);
        Ok(RouteWriter { socket, seq: 1 })
    }

    /// Applies `writes` in order; returns the index of each write the kernel refused, with
    /// the reason.
    pub fn write(&mut self, writes: &[RouteWrite]) -> BTreeMap<usize, String> {
        let mut failed = BTreeMap::new();
        for (chunk_no, chunk) in writes.chunks(BATCH).enumerate() {
            let base = chunk_no * BATCH;
            if let Err(e) = self.write_batch(chunk, base, &mut failed) {
                // Acknowledgements lost: which of these took effect is unknown, so all count
                // as failed and the next pass re-reads the kernel.
                for (i, w) in chunk.iter().enumerate() {
                    failed
                        .entry(base + i)
                        .or_insert_with(|| format!("route {}: {e}", w.prefix()));
                }
            }
        }
        failed
    }

    fn write_batch(
        &mut self,
        chunk: &[RouteWrite],
        base: usize,
        failed: &mut BTreeMap<usize, String>,
    ) -> Result<(), String> {
        let first_seq = self.seq;
        let mut buf = Vec::with_capacity(chunk.len() * 128);
        for (i, w) in chunk.iter().enumerate() {
            let (flags, payload) = match w {
                RouteWrite::Replace(_, m) => (
                    NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
                    RouteNetlinkMessage::NewRoute(m.clone()),
                ),
                RouteWrite::Delete(_, m) => {
                    (NLM_F_REQUEST, RouteNetlinkMessage::DelRoute(m.clone()))
                }
            };
            let mut header = NetlinkHeader::default();
            header.flags = flags;
            if i + 1 == chunk.len() {
                header.flags |= NLM_F_ACK;
            }
            header.sequence_number = self.seq;
            self.seq = self.seq.wrapping_add(1);
            let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
            msg.finalize();
            let at = buf.len();
            buf.resize(at + msg.buffer_len(), 0);
            msg.serialize(&mut buf[at..]);
        }
        let last_seq = self.seq.wrapping_sub(1);
        let sent = self
            .socket
            .send(&buf, 0)
            .map_err(|e| format!("send a batch of route requests: {e}"))?;
        if sent != buf.len() {
            return Err(format!("netlink took {sent} of {} bytes", buf.len()));
        }
        // Everything was processed inside `send`; the answers are already queued.
        let mut rx: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            rx.clear();
            self.socket
                .recv(&mut rx, nix::libc::MSG_DONTWAIT)
                .map_err(|e| format!("read the kernel's answers to route requests: {e}"))?;
            let mut at = 0;
            while at < rx.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[at..])
                    .map_err(|e| format!("undecodable netlink answer: {e}"))?;
                at += (msg.header.length as usize).max(16).next_multiple_of(4);
                let seq = msg.header.sequence_number;
                let index = seq.wrapping_sub(first_seq) as usize;
                if let NetlinkPayload::Error(e) = &msg.payload
                    && index < chunk.len()
                {
                    let code = e.raw_code();
                    let absent_delete =
                        code == -ESRCH && matches!(chunk[index], RouteWrite::Delete(..));
                    if code != 0 && !absent_delete {
                        let verb = match chunk[index] {
                            RouteWrite::Replace(..) => "replace",
                            RouteWrite::Delete(..) => "delete",
                        };
                        failed.insert(
                            base + index,
                            format!("{verb} route {}: {}", chunk[index].prefix(), e.to_io()),
                        );
                    }
                }
                if seq == last_seq {
                    return Ok(());
                }
            }
        }
    }
}
