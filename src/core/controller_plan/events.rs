//! Events the controller emits, typed. The plan is recomputed on every reconcile, so the same
//! event is planned again while its cause lasts; the shell's recorder aggregates repeats
//! (as kube-rs's `Recorder` and client-go's correlator do).

/// Normal or Warning, as in `events.k8s.io/v1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EventType {
    Normal,
    Warning,
}

/// The object an event is about (all of ours are cluster-scoped).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    /// `Node`, `Site`, `GatewayPool`, …
    pub kind: String,
    pub name: String,
}

impl ObjectRef {
    pub fn node(name: &str) -> Self {
        ObjectRef {
            kind: "Node".into(),
            name: name.into(),
        }
    }

    pub fn site(name: &str) -> Self {
        ObjectRef {
            kind: "Site".into(),
            name: name.into(),
        }
    }
}

/// One event to emit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PlannedEvent {
    pub regarding: ObjectRef,
    pub type_: EventType,
    /// CamelCase, e.g. `PodCIDRAllocated`.
    pub reason: String,
    pub message: String,
}

impl PlannedEvent {
    pub fn normal(regarding: ObjectRef, reason: &str, message: impl Into<String>) -> Self {
        PlannedEvent {
            regarding,
            type_: EventType::Normal,
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn warning(regarding: ObjectRef, reason: &str, message: impl Into<String>) -> Self {
        PlannedEvent {
            regarding,
            type_: EventType::Warning,
            reason: reason.into(),
            message: message.into(),
        }
    }
}
