//! The request/response protocol between simulated shells and the simulated API server:
//! one length-prefixed JSON request and one response per turmoil TCP connection.
//!
//! One connection per call keeps the protocol robust to what turmoil does to TCP under
//! partitions and host crashes (segments are dropped, never retransmitted): a call that does
//! not complete within its timeout is simply abandoned and retried by the caller.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use unbounded_net::cluster::ClusterError;

/// Largest frame either side accepts (a full 500-node slice list is far below this).
pub const MAX_FRAME: usize = 64 << 20;

/// One API call. `kind` is the Kubernetes kind (`Node`, `Lease`, `Site`, …).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    Get {
        kind: String,
        ns: Option<String>,
        name: String,
    },
    List {
        kind: String,
        ns: Option<String>,
    },
    /// Long-poll watch: changes strictly after `resource_version`, waiting up to the server's
    /// poll window for the first one.
    Poll {
        kind: String,
        ns: Option<String>,
        resource_version: String,
    },
    Create {
        kind: String,
        ns: Option<String>,
        object: serde_json::Value,
    },
    Replace {
        kind: String,
        ns: Option<String>,
        name: String,
        object: serde_json::Value,
    },
    ReplaceStatus {
        kind: String,
        ns: Option<String>,
        name: String,
        object: serde_json::Value,
    },
    PatchMetadata {
        kind: String,
        ns: Option<String>,
        name: String,
        labels: BTreeMap<String, Option<String>>,
        annotations: BTreeMap<String, Option<String>>,
    },
    Delete {
        kind: String,
        ns: Option<String>,
        name: String,
    },
}

impl Request {
    pub fn kind(&self) -> &str {
        match self {
            Request::Get { kind, .. }
            | Request::List { kind, .. }
            | Request::Poll { kind, .. }
            | Request::Create { kind, .. }
            | Request::Replace { kind, .. }
            | Request::ReplaceStatus { kind, .. }
            | Request::PatchMetadata { kind, .. }
            | Request::Delete { kind, .. } => kind,
        }
    }

    /// True for calls that change the store (counted as API writes).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Request::Get { .. } | Request::List { .. } | Request::Poll { .. }
        )
    }
}

/// What a watch event did to its object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// The answer to one [`Request`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Object(serde_json::Value),
    List {
        items: Vec<serde_json::Value>,
        resource_version: String,
    },
    Events {
        events: Vec<(EventType, serde_json::Value)>,
        resource_version: String,
    },
    Done,
    Error(WireError),
}

/// [`ClusterError`] as it crosses the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WireError {
    NotFound {
        kind: String,
        name: String,
    },
    AlreadyExists {
        kind: String,
        name: String,
    },
    Conflict {
        kind: String,
        name: String,
        expected: String,
        actual: String,
    },
    Invalid {
        kind: String,
        name: String,
        reason: String,
    },
    Gone {
        resource_version: String,
    },
    Serialization {
        kind: String,
        name: String,
        reason: String,
    },
    Unavailable(String),
    Api(String),
}

impl From<ClusterError> for WireError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::NotFound { kind, name } => WireError::NotFound { kind, name },
            ClusterError::AlreadyExists { kind, name } => WireError::AlreadyExists { kind, name },
            ClusterError::Conflict {
                kind,
                name,
                expected,
                actual,
            } => WireError::Conflict {
                kind,
                name,
                expected,
                actual,
            },
            ClusterError::Invalid { kind, name, reason } => {
                WireError::Invalid { kind, name, reason }
            }
            ClusterError::Gone { resource_version } => WireError::Gone { resource_version },
            ClusterError::Serialization { kind, name, reason } => {
                WireError::Serialization { kind, name, reason }
            }
            ClusterError::Unavailable(m) => WireError::Unavailable(m),
            ClusterError::Api(m) => WireError::Api(m),
        }
    }
}

impl From<WireError> for ClusterError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::NotFound { kind, name } => ClusterError::NotFound { kind, name },
            WireError::AlreadyExists { kind, name } => ClusterError::AlreadyExists { kind, name },
            WireError::Conflict {
                kind,
                name,
                expected,
                actual,
            } => ClusterError::Conflict {
                kind,
                name,
                expected,
                actual,
            },
            WireError::Invalid { kind, name, reason } => {
                ClusterError::Invalid { kind, name, reason }
            }
            WireError::Gone { resource_version } => ClusterError::Gone { resource_version },
            WireError::Serialization { kind, name, reason } => {
                ClusterError::Serialization { kind, name, reason }
            }
            WireError::Unavailable(m) => ClusterError::Unavailable(m),
            WireError::Api(m) => ClusterError::Api(m),
        }
    }
}

/// Framing or transport failure.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes one frame: a 4-byte big-endian length, then JSON.
pub async fn write_frame<W, T>(w: &mut W, value: &T) -> Result<(), FrameError>
where
    W: AsyncWriteExt + Unpin,
    T: Serialize,
{
    let body = serde_json::to_vec(value)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    w.write_all(&(body.len() as u32).to_be_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame written by [`write_frame`].
pub async fn read_frame<R, T>(r: &mut R) -> Result<T, FrameError>
where
    R: AsyncReadExt + Unpin,
    T: DeserializeOwned,
{
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(serde_json::from_slice(&body)?)
}
