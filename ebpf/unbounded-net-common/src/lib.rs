//! Types shared between the kernel-side TC program and user space. `no_std` so the eBPF
//! crate can use them; every map key/value is `#[repr(C)]` with explicit padding.
#![no_std]

/// Most nexthops one remote prefix carries in the LPM map value.
pub const MAX_NEXTHOPS: usize = 8;
