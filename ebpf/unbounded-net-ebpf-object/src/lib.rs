//! The TC egress program as an ELF object, compiled by this crate's build script from
//! `ebpf/unbounded-net-ebpf` for `bpfel-unknown-none` with the pinned nightly.
//!
//! A separate crate so only the agent's build (not every crate of the workspace) needs the
//! nightly toolchain and `bpf-linker` that `scripts/setup.sh` installs.

/// aya parses the object in place and needs it 8-byte aligned; `include_bytes!` alone only
/// guarantees byte alignment.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/unbounded-net-ebpf"
)));

/// The ELF bytes of the program, ready for `aya::EbpfLoader::load`.
pub fn object() -> &'static [u8] {
    &OBJECT.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn object_is_an_aligned_bpf_elf() {
        let o = super::object();
        assert_eq!(&o[..4], b"\x7fELF");
        // e_machine 247 = EM_BPF
        assert_eq!(u16::from_le_bytes([o[18], o[19]]), 247);
        assert_eq!(o.as_ptr() as usize % 8, 0);
    }
}
