//! Talking to the user's service manager: `systemctl --user` (Linux) and `launchctl` (macOS,
//! behind `cfg(target_os = "macos")`: untested here). The systemctl calls are proven with a
//! stub `systemctl` first on PATH that records its arguments (tests/service.rs): no machine
//! here runs systemd as PID 1.

use anyhow::{Context, Result, bail};
use std::process::{Command, Stdio};

use super::units::{SERVICE_UNIT, SOCKET_UNIT};

/// `systemctl --user ARGS`, its output captured; the program is looked up on PATH.
fn systemctl(args: &[&str]) -> Result<std::process::Output> {
    Command::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `systemctl --user {}`", args.join(" ")))
}

/// Runs `systemctl --user ARGS` and fails with its stderr when it fails.
fn systemctl_ok(args: &[&str]) -> Result<()> {
    let out = systemctl(args)?;
    if !out.status.success() {
        bail!(
            "`systemctl --user {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether a user service manager answers (`systemctl --user show-environment`): not in
/// containers, WSL without systemd, most CI jobs, or a session without a user bus.
pub fn user_manager_answers() -> bool {
    cfg!(target_os = "linux") && systemctl(&["show-environment"]).is_ok_and(|o| o.status.success())
}

/// The commands `install` runs after writing the units, as shown by `--dry-run`.
pub const INSTALL_CALLS: &[&[&str]] = &[&["daemon-reload"], &["enable", "--now", SOCKET_UNIT]];

/// The commands `uninstall` runs before removing the units.
pub const UNINSTALL_CALLS: &[&[&str]] =
    &[&["disable", "--now", SOCKET_UNIT], &["stop", SERVICE_UNIT]];

/// Makes systemd read the units, then enables and starts the socket.
pub fn systemd_enable() -> Result<()> {
    for call in INSTALL_CALLS {
        systemctl_ok(call)?;
    }
    Ok(())
}

/// Stops and disables the socket and the service (errors are reported, not fatal: the units
/// may be gone already), then makes systemd forget the removed files.
pub fn systemd_disable() -> Vec<String> {
    let mut problems = Vec::new();
    for call in UNINSTALL_CALLS {
        if let Err(e) = systemctl_ok(call) {
            problems.push(format!("{e:#}"));
        }
    }
    problems
}

/// After the unit files are gone.
pub fn systemd_reload() -> Result<()> {
    systemctl_ok(&["daemon-reload"])
}

/// `systemctl --user is-enabled|is-active UNIT`: the word it prints (`enabled`, `active`,
/// `inactive`, ...), `None` when systemctl cannot be asked.
pub fn systemd_state(query: &str, unit: &str) -> Option<String> {
    let out = systemctl(&[query, unit]).ok()?;
    let word = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!word.is_empty()).then_some(word)
}

/// Loads the LaunchAgent into the user's GUI domain (`launchctl bootstrap gui/UID PLIST`).
#[cfg(target_os = "macos")]
pub fn launchd_load(plist: &std::path::Path) -> Result<()> {
    let domain = format!("gui/{}", uid());
    let st = Command::new("/bin/launchctl")
        .args(["bootstrap", &domain])
        .arg(plist)
        .status()
        .context("cannot run launchctl")?;
    if !st.success() {
        bail!(
            "`launchctl bootstrap {domain} {}` failed ({st})",
            plist.display()
        );
    }
    Ok(())
}

/// Unloads it (`launchctl bootout gui/UID/LABEL`).
#[cfg(target_os = "macos")]
pub fn launchd_unload() -> Vec<String> {
    let target = format!("gui/{}/{}", uid(), super::units::LAUNCHD_LABEL);
    match Command::new("/bin/launchctl")
        .args(["bootout", &target])
        .status()
    {
        Ok(s) if s.success() => Vec::new(),
        Ok(s) => vec![format!("`launchctl bootout {target}` failed ({s})")],
        Err(e) => vec![format!("cannot run launchctl: {e}")],
    }
}

#[cfg(target_os = "macos")]
fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

#[cfg(not(target_os = "macos"))]
pub fn launchd_load(_plist: &std::path::Path) -> Result<()> {
    bail!("launchd exists only on macOS")
}

#[cfg(not(target_os = "macos"))]
pub fn launchd_unload() -> Vec<String> {
    Vec::new()
}
