//! The health probe wire format: one fixed-size, versioned UDP datagram.
//!
//! ```text
//!  0..4   magic "UNHP"
//!  4      version (1)
//!  5      kind: 1 = request, 2 = reply
//!  6..8   reserved, zero
//!  8..16  sequence number (big endian)
//! 16..24  sender's timestamp in nanoseconds, echoed unchanged by the responder
//! ```
//!
//! Anything that is not exactly this is rejected with a [`WireError`]; the shells count and
//! drop it.

/// Length of every probe datagram.
pub const PROBE_LEN: usize = 24;
const MAGIC: &[u8; 4] = b"UNHP";
/// Wire format version this build speaks.
pub const PROBE_VERSION: u8 = 1;

/// Request (prober → responder) or reply (responder → prober).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Request,
    Reply,
}

/// One decoded probe datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbePacket {
    pub kind: ProbeKind,
    pub seq: u64,
    /// Opaque to the responder; the prober puts its clock here to measure round trips.
    pub timestamp_ns: u64,
}

/// Why a datagram was not a probe.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("probe datagram is {0} bytes, expected {PROBE_LEN}")]
    Length(usize),
    #[error("probe datagram does not start with the UNHP magic")]
    Magic,
    #[error("probe version {0} is not supported (this agent speaks {PROBE_VERSION})")]
    Version(u8),
    #[error("probe kind {0} is neither request (1) nor reply (2)")]
    Kind(u8),
    #[error("probe reserved bytes are not zero")]
    Reserved,
}

impl ProbePacket {
    pub fn request(seq: u64, timestamp_ns: u64) -> Self {
        ProbePacket {
            kind: ProbeKind::Request,
            seq,
            timestamp_ns,
        }
    }

    /// The reply a responder sends to this request.
    pub fn reply(&self) -> Self {
        ProbePacket {
            kind: ProbeKind::Reply,
            ..*self
        }
    }

    pub fn encode(&self) -> [u8; PROBE_LEN] {
        let mut out = [0u8; PROBE_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = PROBE_VERSION;
        out[5] = match self.kind {
            ProbeKind::Request => 1,
            ProbeKind::Reply => 2,
        };
        out[8..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.timestamp_ns.to_be_bytes());
        out
    }

    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        if buf.len() != PROBE_LEN {
            return Err(WireError::Length(buf.len()));
        }
        if &buf[..4] != MAGIC {
            return Err(WireError::Magic);
        }
        if buf[4] != PROBE_VERSION {
            return Err(WireError::Version(buf[4]));
        }
        let kind = match buf[5] {
            1 => ProbeKind::Request,
            2 => ProbeKind::Reply,
            other => return Err(WireError::Kind(other)),
        };
        if buf[6..8] != [0, 0] {
            return Err(WireError::Reserved);
        }
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[at..at + 8]);
            u64::from_be_bytes(b)
        };
        Ok(ProbePacket {
            kind,
            seq: word(8),
            timestamp_ns: word(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_reply_keeps_seq_and_timestamp() {
        let req = ProbePacket::request(7, 123_456);
        let decoded = ProbePacket::decode(&req.encode()).unwrap();
        assert_eq!(decoded, req);
        let rep = decoded.reply();
        assert_eq!(rep.kind, ProbeKind::Reply);
        assert_eq!((rep.seq, rep.timestamp_ns), (7, 123_456));
        assert_eq!(ProbePacket::decode(&rep.encode()).unwrap(), rep);
    }

    #[test]
    fn rejects_each_kind_of_malformed_datagram() {
        let good = ProbePacket::request(1, 2).encode();
        assert_eq!(ProbePacket::decode(&good[..23]), Err(WireError::Length(23)));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(ProbePacket::decode(&long), Err(WireError::Length(25)));
        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(ProbePacket::decode(&bad), Err(WireError::Magic));
        let mut bad = good;
        bad[4] = 2;
        assert_eq!(ProbePacket::decode(&bad), Err(WireError::Version(2)));
        let mut bad = good;
        bad[5] = 9;
        assert_eq!(ProbePacket::decode(&bad), Err(WireError::Kind(9)));
        let mut bad = good;
        bad[7] = 1;
        assert_eq!(ProbePacket::decode(&bad), Err(WireError::Reserved));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ProbePacket::decode(&bytes);
        }

        #[test]
        fn encode_decode_identity(seq in any::<u64>(), ts in any::<u64>(), reply in any::<bool>()) {
            let mut p = ProbePacket::request(seq, ts);
            if reply { p = p.reply(); }
            prop_assert_eq!(ProbePacket::decode(&p.encode()).unwrap(), p);
        }
    }
}
