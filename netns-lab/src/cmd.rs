//! Running the external tools the lab is built from (`ip`, `nft`, `tc`, CNI plugins, ping).
//!
//! Every command is logged at debug level and every failure carries the command line and its
//! stderr, so a topology that cannot be built says exactly which step failed.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// A command that failed or could not be started.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("could not start `{cmd}`: {source} (is it installed? run `netns-lab doctor`)")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
}

fn render(program: &str, args: &[&str]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Runs `program args…`, feeding `stdin` if given; fails on a non-zero exit.
pub fn run_with_input(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Output, CmdError> {
    let cmd = render(program, args);
    if std::env::var_os("NETNS_LAB_TRACE").is_some() {
        eprintln!("+ {cmd}");
        if let Some(input) = stdin {
            for line in input.lines() {
                eprintln!("+   {line}");
            }
        }
    }
    let mut command = Command::new(program);
    crate::signals::unblock_for_children(&mut command);
    let mut child = command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CmdError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if let Some(input) = stdin {
        // The pipe is dropped at the end of this block so the child sees EOF.
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(input.as_bytes())
            .map_err(|source| CmdError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| CmdError::Spawn {
        cmd: cmd.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(CmdError::Failed {
            cmd,
            status: out.status.to_string(),
            stderr: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        });
    }
    Ok(out)
}

/// Runs `program args…`; fails on a non-zero exit.
pub fn run(program: &str, args: &[&str]) -> Result<Output, CmdError> {
    run_with_input(program, args, None)
}

/// Runs `program args…` and returns its stdout as text.
pub fn stdout(program: &str, args: &[&str]) -> Result<String, CmdError> {
    Ok(String::from_utf8_lossy(&run(program, args)?.stdout).into_owned())
}

/// Runs a list of `ip` commands in one process (`ip -n NS -batch -`): one fork instead of
/// dozens, which is most of the bring-up time.
pub fn ip_batch(netns: &str, lines: &[String]) -> Result<(), CmdError> {
    if lines.is_empty() {
        return Ok(());
    }
    let script = lines.join("\n") + "\n";
    run_with_input("ip", &["-n", netns, "-batch", "-"], Some(&script))
        .map(|_| ())
        .map_err(|e| match e {
            // Name the line that failed: `ip` only says "Command failed -:N".
            CmdError::Failed {
                cmd,
                status,
                stderr,
            } => {
                let line = stderr
                    .split("Command failed -:")
                    .nth(1)
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .and_then(|n| lines.get(n.wrapping_sub(1)));
                let first = stderr.lines().next().unwrap_or_default().to_string();
                CmdError::Failed {
                    cmd: match line {
                        Some(l) => format!("{cmd}: `{l}`"),
                        None => cmd,
                    },
                    status,
                    stderr: first,
                }
            }
            other => other,
        })
}

/// Runs `program args…` inside a namespace (`ip netns exec`).
pub fn in_netns(netns: &str, program: &str, args: &[&str]) -> Result<Output, CmdError> {
    let mut full = vec!["netns", "exec", netns, program];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Loads an nftables ruleset into a namespace (`nft -f -`).
pub fn nft(netns: &str, ruleset: &str) -> Result<(), CmdError> {
    run_with_input(
        "ip",
        &["netns", "exec", netns, "nft", "-f", "-"],
        Some(ruleset),
    )
    .map(|_| ())
}

/// Writes a sysctl inside a namespace.
pub fn sysctl(netns: &str, key: &str, value: &str) -> Result<(), CmdError> {
    let kv = format!("{key}={value}");
    in_netns(netns, "sysctl", &["-qw", &kv]).map(|_| ())
}
