//! Remote builders: which are configured (`builders`, `/etc/nix/machines`, `@file`s), and for
//! each, from the settings alone (doctor runs as the user, without root's SSH setup), whether it
//! looks in its own caches, that it cannot reach the loopback proxy, and what that costs.

use super::*;
use crate::nix::builders::{self, Lookup};

pub(super) fn builder_checks(r: &mut Report, setup: &NixSetup, user_view: &SettingsView) {
    let s = "builders";
    if !setup.user_settings_honoured() {
        for name in ["builders", "builders-use-substitutes"] {
            if let Some(v) = user_view.scalar(name) {
                r.add(
                    s,
                    Status::Warn,
                    format!("your nix.conf sets {name} = {v}, which the nix-daemon ignores from a user it does not trust"),
                    Some(format!("ask an administrator to set it in {}", setup.system_conf.display())),
                );
            }
        }
    }
    let in_force = builders::for_command(setup, &[]);
    for u in &in_force.machines.unreadable {
        r.add(
            s,
            Status::Info,
            format!(
                "cannot read the machines file {} ({}): its builders are not listed here",
                u.file.display(),
                u.reason
            ),
            None,
        );
    }
    let machines = &in_force.machines.machines;
    if machines.is_empty() {
        return;
    }
    r.add(
        s,
        Status::Info,
        "remote builders cannot reach the loopback proxy, by design (their 127.0.0.1 is their own; never tunnel the proxy's URL to them): inputs from private caches are substituted on this machine and uploaded to the builder over SSH",
        None,
    );
    let bus = in_force.use_substitutes;
    for m in machines {
        let from = match &m.file {
            Some(f) => format!("from {}", f.display()),
            None => "from the builders setting".into(),
        };
        let what = match builders::lookup(m.protocol, bus) {
            Lookup::InputsAndOutput => format!(
                "tries its own caches for missing inputs and for the output (builders-use-substitutes = {bus}); a cache it lists but cannot reach costs each build there about 5 s"
            ),
            Lookup::Output => format!(
                "tries its own caches for the output before building (ssh-ng does, whatever builders-use-substitutes says), and gets every input uploaded from here (builders-use-substitutes = {bus}); a cache it lists but cannot reach costs each build there about 5 s"
            ),
            Lookup::Inputs => format!(
                "tries its own caches for missing inputs (builders-use-substitutes = {bus}); a cache it lists but cannot reach costs each build there about 5 s"
            ),
            Lookup::Never => format!(
                "never substitutes by itself: every input it lacks is uploaded from here over SSH (builders-use-substitutes = {bus})"
            ),
            Lookup::Unknown => {
                "not an SSH builder: what it substitutes is its own store's business".into()
            }
        };
        let local = if m.is_localhost() {
            " (localhost: Nix runs it on this machine without SSH)"
        } else {
            ""
        };
        r.add(
            s,
            Status::Info,
            format!("builder {}{local} ({from}): {what}", m.uri),
            None,
        );
    }
}
