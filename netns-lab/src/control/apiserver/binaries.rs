//! The programs kube mode runs, checked (and the Go ones built) before a lab is built.
//!
//! `scripts/setup.sh` does not build the Go control plane: only `--control-plane kube` and the
//! API-server tests use it, and `controlplane/build.sh` takes ≈ 10 min the first time. So the
//! first kube-mode run builds it here, saying so, with build.sh's progress lines on stderr;
//! later runs find it cached.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::signals;

/// The upstream binaries `controlplane/build.sh` caches.
pub const UPSTREAM: [&str; 3] = ["etcd", "kube-apiserver", "kubectl"];
/// Our binaries kube mode starts, taken from next to `netns-lab` (same cargo profile).
pub const OURS: [&str; 2] = ["unbounded-net-controller", "unbounded-net-node"];

#[derive(Debug, thiserror::Error)]
pub enum BinariesError {
    #[error("{} not found: build it with `cargo build{} -p unbounded-net --bins`", .path.display(), if *.release { " --release" } else { "" })]
    Ours { path: PathBuf, release: bool },
    #[error(
        "UNBOUNDED_CP_BIN_DIR={} has no {binary}: put it there, or unset UNBOUNDED_CP_BIN_DIR to build the pinned binaries with controlplane/build.sh", .dir.display()
    )]
    NotInBinDir { dir: PathBuf, binary: String },
    #[error("cannot read {}: {source}", .script.display())]
    Script {
        script: PathBuf,
        source: std::io::Error,
    },
    #[error("controlplane/build.sh failed ({status}); its output is above")]
    Build { status: String },
    #[error("controlplane/build.sh succeeded but {} is missing", .0.display())]
    StillMissing(PathBuf),
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("netns-lab sits in the workspace")
        .to_path_buf()
}

fn build_script() -> PathBuf {
    repo_root().join("controlplane/build.sh")
}

/// Where `controlplane/build.sh` caches its binaries: `$UNBOUNDED_CP_BIN_DIR`, else the
/// directory named after the versions pinned in build.sh.
pub fn upstream_dir() -> Result<PathBuf, BinariesError> {
    if let Ok(dir) = std::env::var("UNBOUNDED_CP_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let script = build_script();
    let text = std::fs::read_to_string(&script)
        .map_err(|source| BinariesError::Script { script, source })?;
    let pinned = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let root = std::env::var("UNBOUNDED_CP_CACHE")
        .unwrap_or_else(|_| "/var/cache/unbounded-net/controlplane".into());
    Ok(PathBuf::from(root).join(format!(
        "k8s-{}-etcd-{}",
        pinned("K8S_VERSION"),
        pinned("ETCD_VERSION")
    )))
}

/// One of our binaries, next to the running `netns-lab`.
pub fn our_binary(name: &str) -> Result<PathBuf, BinariesError> {
    let exe = std::env::current_exe().map_err(|source| BinariesError::Script {
        script: "/proc/self/exe".into(),
        source,
    })?;
    let path = exe.with_file_name(name);
    if path.is_file() {
        return Ok(path);
    }
    let release = exe
        .parent()
        .and_then(|p| p.file_name())
        .is_some_and(|p| p == "release");
    Err(BinariesError::Ours { path, release })
}

/// Everything kube mode runs: our binaries must be built already (the fix is one cargo
/// command, so this fails at once); the upstream ones are built now when missing, unless
/// `$UNBOUNDED_CP_BIN_DIR` names a directory of the caller's own. Returns the upstream
/// binaries' directory.
pub fn ensure_kube_mode() -> Result<PathBuf, BinariesError> {
    for name in OURS {
        our_binary(name)?;
    }
    ensure_upstream()
}

/// The upstream binaries' directory, built with `controlplane/build.sh` first if needed.
pub fn ensure_upstream() -> Result<PathBuf, BinariesError> {
    let may_build = std::env::var_os("UNBOUNDED_CP_BIN_DIR").is_none();
    ensure_upstream_in(&upstream_dir()?, may_build, &build_script())
}

fn first_missing(dir: &Path) -> Option<PathBuf> {
    UPSTREAM.iter().map(|b| dir.join(b)).find(|p| !p.is_file())
}

fn ensure_upstream_in(
    dir: &Path,
    may_build: bool,
    script: &Path,
) -> Result<PathBuf, BinariesError> {
    let Some(missing) = first_missing(dir) else {
        return Ok(dir.to_path_buf());
    };
    if !may_build {
        return Err(BinariesError::NotInBinDir {
            dir: dir.to_path_buf(),
            binary: missing
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        });
    }
    eprintln!(
        "netns-lab: {} not found: building kube-apiserver/etcd from pinned Go modules, ~10 min \
         once ({}; cached in {} afterwards)",
        missing.display(),
        script.display(),
        dir.display()
    );
    let mut cmd = Command::new(script);
    // build.sh prints the directory on stdout (we know it) and its progress on stderr.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // Ctrl-C must stop the build: the lab blocks these signals for its own teardown thread.
    signals::unblock_for_children(&mut cmd);
    let status = cmd.status().map_err(|source| BinariesError::Script {
        script: script.to_path_buf(),
        source,
    })?;
    if !status.success() {
        return Err(BinariesError::Build {
            status: status.to_string(),
        });
    }
    match first_missing(dir) {
        Some(p) => Err(BinariesError::StillMissing(p)),
        None => Ok(dir.to_path_buf()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("netns-lab-bins-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("build.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn present_binaries_are_used_without_building() {
        let d = scratch("present");
        for b in UPSTREAM {
            std::fs::write(d.join(b), "").unwrap();
        }
        // A script that would fail proves it is not run.
        let s = script(&d, "exit 1");
        assert_eq!(ensure_upstream_in(&d, true, &s).unwrap(), d);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_binaries_are_built_by_the_script() {
        let d = scratch("build");
        let out = d.join("out");
        let s = script(
            &d,
            &format!(
                "mkdir -p {0} && touch {0}/etcd {0}/kube-apiserver {0}/kubectl",
                out.display()
            ),
        );
        assert_eq!(ensure_upstream_in(&out, true, &s).unwrap(), out);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_failed_or_incomplete_build_is_an_error() {
        let d = scratch("fail");
        let out = d.join("out");
        let failing = script(&d, "exit 3");
        let e = ensure_upstream_in(&out, true, &failing).unwrap_err();
        assert!(matches!(e, BinariesError::Build { .. }), "{e}");
        let partial = script(
            &d,
            &format!("mkdir -p {0} && touch {0}/etcd", out.display()),
        );
        let e = ensure_upstream_in(&out, true, &partial).unwrap_err();
        assert!(e.to_string().contains("kube-apiserver"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_directory_of_the_callers_own_is_never_built_into() {
        let d = scratch("own");
        let s = script(&d, &format!("touch {}/etcd", d.display()));
        let e = ensure_upstream_in(&d, false, &s).unwrap_err();
        assert!(e.to_string().contains("has no etcd"), "{e}");
        assert!(!d.join("etcd").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
