//! Deliberate bugs, switched on only by tests, to prove the invariants catch them.

/// Which bugs are switched on (all off in every real run; the CLI cannot set them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// The agent keeps unhealthy gateways in ECMP (ignores its prober's verdicts).
    pub ecmp_ignores_health: bool,
    /// The controller hands every new node the first block of its pool, whether or not
    /// another node already holds it.
    pub allocator_reuses_blocks: bool,
}
