//! The TC program lands with the eBPF dataplane issue.
#![no_std]
