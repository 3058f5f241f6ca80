//! Builds the eBPF program with aya-build. The program needs a nightly with `rust-src`
//! (build-std) and `bpf-linker`; both come from `scripts/setup.sh`, and their absence fails
//! the build with a message that says so instead of a linker error deep in a sub-build.

use std::path::PathBuf;
use std::process::Command;

/// Keep in step with NIGHTLY in scripts/setup.sh (its LLVM must not be newer than the one
/// bpf-linker is built against).
const NIGHTLY: &str = "nightly-2026-05-20";

fn fail(what: &str) -> ! {
    panic!(
        "cannot build the eBPF dataplane program: {what}. Run `scripts/setup.sh` (it installs \
         rustup toolchain {NIGHTLY} with rust-src and bpf-linker)."
    )
}

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let program = here.join("../unbounded-net-ebpf");
    let common = here.join("../unbounded-net-common");
    println!("cargo:rerun-if-changed={}", common.display());
    println!("cargo:rerun-if-env-changed=PATH");
    // Override for trying another nightly (and for checking the failure message).
    println!("cargo:rerun-if-env-changed=UNBOUNDED_EBPF_NIGHTLY");
    let nightly = std::env::var("UNBOUNDED_EBPF_NIGHTLY").unwrap_or_else(|_| NIGHTLY.to_string());
    let nightly = nightly.as_str();

    let rust_src = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", nightly])
        .output();
    match rust_src {
        Err(e) => fail(&format!("rustup is not runnable ({e})")),
        Ok(o) if !o.status.success() => fail(&format!("rustup toolchain {nightly} is missing")),
        Ok(o) if !String::from_utf8_lossy(&o.stdout).contains("rust-src") => {
            fail(&format!("toolchain {nightly} lacks the rust-src component"))
        }
        Ok(_) => {}
    }
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_err()
    {
        fail("bpf-linker is not on PATH");
    }

    // The program crate has its own workspace (it targets bpfel-unknown-none); aya-build runs
    // `cargo build --package` from the current directory, so build from inside it.
    let program = program
        .canonicalize()
        .expect("ebpf/unbounded-net-ebpf exists");
    std::env::set_current_dir(&program).expect("enter ebpf/unbounded-net-ebpf");
    let root = program.to_str().expect("UTF-8 path");
    let package = aya_build::Package {
        name: "unbounded-net-ebpf",
        root_dir: root,
        ..Default::default()
    };
    if let Err(e) = aya_build::build_ebpf([package], aya_build::Toolchain::Custom(nightly)) {
        fail(&format!("the eBPF build failed: {e:#}"));
    }
}
