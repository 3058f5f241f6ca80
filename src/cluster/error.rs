//! Typed errors of the cluster seam, mirroring the API server's status reasons.

/// What went wrong talking to the cluster. Variants mirror the API server's status reasons so
/// the kube-rs implementation maps them 1:1 (404, 409 AlreadyExists, 409 Conflict, 422, 410).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: String, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: String, name: String },
    /// Optimistic concurrency: someone wrote the object since it was read. Re-read and retry.
    #[error(
        "{kind} {name:?} was modified (resourceVersion {actual}, write was based on {expected}); re-read it and retry"
    )]
    Conflict {
        kind: String,
        name: String,
        expected: String,
        actual: String,
    },
    /// The write breaks an API-server rule (e.g. changing `Node.spec.podCIDRs` once set).
    #[error("{kind} {name:?} is invalid: {reason}")]
    Invalid {
        kind: String,
        name: String,
        reason: String,
    },
    /// The watch resourceVersion is older than the server keeps: list again, then watch.
    #[error(
        "resourceVersion {resource_version} is too old (compacted); list again and watch from the new version"
    )]
    Gone { resource_version: String },
    /// The object could not be (de)serialized as the requested type.
    #[error("{kind} {name:?} could not be (de)serialized: {reason}")]
    Serialization {
        kind: String,
        name: String,
        reason: String,
    },
    /// The API server cannot be reached (used by fault injection in the simulator).
    #[error("API server unavailable: {0}")]
    Unavailable(String),
    /// Any other API error, with the server's message.
    #[error("API error: {0}")]
    Api(String),
}

impl ClusterError {
    /// True for errors a shell should handle by re-reading and retrying (not by giving up).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClusterError::Conflict { .. }
                | ClusterError::Gone { .. }
                | ClusterError::Unavailable(_)
        )
    }
}
