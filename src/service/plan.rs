//! What `service install` does on this machine, decided from gathered facts (pure, so that
//! every combination is a table test): which route starts the proxy, what happens to the
//! user's nix.conf, and the exit code.

use serde::{Deserialize, Serialize};

/// How the background proxy is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// systemd user units: the socket is enabled and started; systemd starts the proxy on the
    /// first connection.
    Systemd,
    /// A macOS LaunchAgent with a socket (untested: no Mac here).
    Launchd,
    /// No user service manager: a detached `proxy start --persistent` (started again at login
    /// by the user's shell profile or a cron `@reboot`).
    Persistent,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Systemd => "systemd user units (socket-activated)",
            Route::Launchd => "a launchd LaunchAgent (socket-activated)",
            Route::Persistent => "a detached proxy (no user service manager)",
        }
    }

    /// Whether a service manager starts the proxy on the first connection.
    pub fn socket_activated(self) -> bool {
        matches!(self, Route::Systemd | Route::Launchd)
    }
}

/// What the daemon makes of this user's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Trusted (or root, or a single-user install): the include's settings take effect.
    Honoured,
    /// Untrusted, but an administrator allowed every proxy URL (`trusted-substituters`, or the
    /// daemon fetched through it): the include's substituters take effect.
    AdminRoute,
    /// Untrusted, and the URLs are not allowed: an administrator must act.
    NeedsAdmin,
}

/// The trust the service can count on: `honoured` (the daemon honours the user's settings),
/// else for each S3 cache whether its URL (generation 0) is in the daemon's readable
/// `trusted-substituters` or the running proxy saw the daemon fetch through it. Every one
/// must be allowed; with none recorded there is nothing to allow yet.
pub fn trust_of(honoured: bool, allowed: &[bool]) -> Trust {
    if honoured {
        Trust::Honoured
    } else if allowed.iter().all(|a| *a) {
        Trust::AdminRoute
    } else {
        Trust::NeedsAdmin
    }
}

/// The user's nix.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conf {
    /// It includes the file already (a module put the line there, or an earlier install).
    Included,
    /// It can be edited (or created).
    Writable,
    /// It cannot be edited (a home-manager or NixOS symlink into the store, read-only): why.
    Blocked(String),
}

/// The facts `install` decides from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub macos: bool,
    /// `systemctl --user` answers.
    pub user_manager: bool,
    pub trust: Trust,
    pub conf: Conf,
    /// S3 caches recorded in config.toml.
    pub s3_caches: usize,
}

/// What to do with nix.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfAction {
    /// Nothing: it includes the file.
    Keep,
    /// Append `!include nixstore-auth.conf`.
    AddLine,
    /// Write nothing there; print the line to add (why it cannot be edited).
    PrintLine(String),
}

/// Something to tell the user after installing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// No S3 cache yet: nothing is served until `use`.
    NothingRecorded,
    /// How to start the detached proxy at login.
    StartAtLogin,
    /// The administrator's snippet is needed (exit 3).
    AdminSnippet,
    /// The URLs an administrator listed never move (misses may be remembered for an hour).
    FixedUrls,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub route: Route,
    pub conf: ConfAction,
    /// URLs stay at generation 0 (an administrator lists them).
    pub fixed_urls: bool,
    pub notes: Vec<Note>,
    /// 0, or 3 when an administrator must act.
    pub exit: i32,
}

pub fn decide(f: &Facts) -> Decision {
    let route = match (f.macos, f.user_manager) {
        (true, _) => Route::Launchd,
        (false, true) => Route::Systemd,
        (false, false) => Route::Persistent,
    };
    let conf = match &f.conf {
        Conf::Included => ConfAction::Keep,
        Conf::Writable => ConfAction::AddLine,
        Conf::Blocked(why) => ConfAction::PrintLine(why.clone()),
    };
    let mut notes = Vec::new();
    if f.s3_caches == 0 {
        notes.push(Note::NothingRecorded);
    }
    if route == Route::Persistent {
        notes.push(Note::StartAtLogin);
    }
    let fixed_urls = f.trust != Trust::Honoured;
    let exit = match f.trust {
        Trust::NeedsAdmin if f.s3_caches > 0 => {
            notes.push(Note::AdminSnippet);
            crate::error::EXIT_NEEDS_ADMIN
        }
        _ => 0,
    };
    if fixed_urls && f.s3_caches > 0 && exit == 0 {
        notes.push(Note::FixedUrls);
    }
    Decision {
        route,
        conf,
        fixed_urls,
        notes,
        exit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_table() {
        // (honoured, each cache allowed) -> trust
        let rows: [(bool, &[bool], Trust); 6] = [
            (true, &[false], Trust::Honoured),
            (true, &[], Trust::Honoured),
            (false, &[], Trust::AdminRoute),
            (false, &[true, true], Trust::AdminRoute),
            (false, &[true, false], Trust::NeedsAdmin),
            (false, &[false], Trust::NeedsAdmin),
        ];
        for (i, (h, a, want)) in rows.into_iter().enumerate() {
            assert_eq!(trust_of(h, a), want, "row {i}");
        }
    }

    #[test]
    fn install_decisions() {
        let ro = Conf::Blocked("a symlink".into());
        let facts = |macos, mgr, trust, conf: &Conf, n| Facts {
            macos,
            user_manager: mgr,
            trust,
            conf: conf.clone(),
            s3_caches: n,
        };
        use Note::*;
        use Trust::*;
        // (facts) -> (route, conf action, fixed URLs, notes, exit)
        let rows = [
            (
                facts(false, true, Honoured, &Conf::Writable, 1),
                Route::Systemd,
                ConfAction::AddLine,
                false,
                vec![],
                0,
            ),
            (
                facts(false, false, Honoured, &Conf::Writable, 1),
                Route::Persistent,
                ConfAction::AddLine,
                false,
                vec![StartAtLogin],
                0,
            ),
            (
                facts(true, false, Honoured, &Conf::Included, 0),
                Route::Launchd,
                ConfAction::Keep,
                false,
                vec![NothingRecorded],
                0,
            ),
            (
                facts(false, true, Honoured, &ro, 2),
                Route::Systemd,
                ConfAction::PrintLine("a symlink".into()),
                false,
                vec![],
                0,
            ),
            (
                facts(false, true, AdminRoute, &Conf::Writable, 1),
                Route::Systemd,
                ConfAction::AddLine,
                true,
                vec![FixedUrls],
                0,
            ),
            (
                facts(false, false, NeedsAdmin, &Conf::Writable, 1),
                Route::Persistent,
                ConfAction::AddLine,
                true,
                vec![StartAtLogin, AdminSnippet],
                3,
            ),
            // Nothing recorded: nothing for an administrator to allow yet.
            (
                facts(false, true, NeedsAdmin, &Conf::Writable, 0),
                Route::Systemd,
                ConfAction::AddLine,
                true,
                vec![NothingRecorded],
                0,
            ),
        ];
        for (i, (f, route, conf, fixed, notes, exit)) in rows.into_iter().enumerate() {
            let d = decide(&f);
            assert_eq!(
                (d.route, d.conf, d.fixed_urls, d.notes, d.exit),
                (route, conf, fixed, notes, exit),
                "row {i}"
            );
        }
    }
}
