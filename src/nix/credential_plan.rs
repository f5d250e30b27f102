//! Where an HTTPS cache's token goes when `use` runs, and which netrc and nix.conf edits follow:
//! pure decisions from what was asked and what is there, so that every combination of
//! netrc/keyring, old/new store, system/user file and "token given or not" is a table test.
//! `cmd/use_.rs` gathers the facts, calls these, and performs the result.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

use super::https_route::Route;

/// The netrc file Nix will read for this cache, and the `netrc-file` line nix.conf needs for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetrcTarget {
    /// `None` when the daemon's own configuration holds the credential (substituter only).
    pub path: Option<PathBuf>,
    /// A `netrc-file = PATH` nix.conf must get (before [`TokenPlan::keep_netrc_line`]).
    pub line: Option<PathBuf>,
}

/// What decides the netrc file.
#[derive(Debug, Clone, Copy)]
pub struct NetrcFacts<'a> {
    /// The administrator lists the cache: the daemon's configuration holds key and credential.
    pub substituter_only: bool,
    /// Writing the system nix.conf (root).
    pub system: bool,
    /// The netrc the daemon reads unless told otherwise (its `netrc-file`, else /etc/nix/netrc).
    pub system_netrc: &'a Path,
    /// The user's nix.conf and its `netrc-file`, if it has one.
    pub conf_path: &'a Path,
    pub configured: Option<&'a Path>,
    /// `--netrc`.
    pub wanted: Option<&'a Path>,
}

/// The netrc file to write, and whether nix.conf must name it. A `--netrc` that contradicts the
/// user's existing `netrc-file` line is an error: the line is the user's, not ours to move.
pub fn netrc_target(f: NetrcFacts) -> Result<NetrcTarget> {
    if f.substituter_only {
        return Ok(NetrcTarget {
            path: None,
            line: None,
        });
    }
    if f.system {
        let path = f.wanted.unwrap_or(f.system_netrc).to_path_buf();
        let line = (path != f.system_netrc).then(|| path.clone());
        return Ok(NetrcTarget {
            path: Some(path),
            line,
        });
    }
    if let (Some(c), Some(w)) = (f.configured, f.wanted)
        && c != w
    {
        bail!(
            "{} already sets netrc-file = {}; drop --netrc to add the entry there, or change that line yourself",
            f.conf_path.display(),
            c.display()
        );
    }
    let path = f
        .configured
        .or(f.wanted)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| f.conf_path.parent().unwrap_or(Path::new(".")).join("netrc"));
    let line = (f.configured != Some(path.as_path())).then(|| path.clone());
    Ok(NetrcTarget {
        path: Some(path),
        line,
    })
}

/// Where the token used from now on comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// Given now (`--token-stdin`, `--token-env`, the prompt).
    Given,
    /// Moved out of the netrc entry into the keyring.
    FromNetrc,
    /// Moved out of the keyring into netrc.
    FromKeyring,
}

/// What is known about the token.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts {
    /// `--secret-store keyring` now.
    pub keyring: bool,
    /// The cache's token was in the keyring so far.
    pub recorded_keyring: bool,
    /// A token was given now.
    pub given: bool,
    /// The netrc already has an entry for the machine.
    pub in_netrc: bool,
    /// The keyring holds a token for the cache (looked up only when `recorded_keyring`).
    pub in_keyring: bool,
    /// Whether there is a netrc file to write at all ([`NetrcTarget::path`]).
    pub netrc_file: bool,
}

/// The edits for the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPlan {
    pub source: Option<TokenSource>,
    /// Write the token into the netrc entry.
    pub write_netrc: bool,
    /// Take the machine's entry out of the netrc (the token moves to the keyring).
    pub remove_netrc_entry: bool,
    /// Store the token in the keyring.
    pub store_in_keyring: bool,
    /// Delete the keyring's copy once netrc holds the token.
    pub delete_from_keyring: bool,
    /// Keep the `netrc-file` line [`NetrcTarget::line`] asks for (nothing to point at otherwise).
    pub keep_netrc_line: bool,
    /// A credential exists afterwards (for `list`).
    pub has_token: bool,
}

/// Decides where the token goes: a given token wins; without one it moves between netrc and
/// the keyring when the store changes, and stays where it is otherwise.
pub fn token_plan(f: TokenFacts) -> TokenPlan {
    let source = if f.given {
        Some(TokenSource::Given)
    } else if f.keyring && !f.recorded_keyring && f.in_netrc {
        Some(TokenSource::FromNetrc)
    } else if !f.keyring && f.recorded_keyring && f.in_keyring {
        Some(TokenSource::FromKeyring)
    } else {
        None
    };
    let write_netrc = source.is_some() && !f.keyring && f.netrc_file;
    TokenPlan {
        source,
        write_netrc,
        remove_netrc_entry: f.keyring && f.in_netrc,
        store_in_keyring: f.keyring && source.is_some(),
        delete_from_keyring: !f.keyring && f.recorded_keyring && write_netrc,
        keep_netrc_line: !f.keyring && (write_netrc || f.in_netrc),
        has_token: source.is_some() || f.in_netrc || f.in_keyring,
    }
}

/// The token plan on a route: the netrc route is [`token_plan`] as asked; the proxy route keeps
/// no token in any netrc (a netrc entry `use` wrote moves to the keyring, or goes when a command
/// gives the token, and so does a keyring copy the command replaces).
pub fn token_plan_on(route: Route, command: bool, f: TokenFacts) -> TokenPlan {
    match (route, command) {
        (Route::Netrc, _) => token_plan(f),
        (Route::Proxy, false) => token_plan(TokenFacts { keyring: true, ..f }),
        (Route::Proxy, true) => TokenPlan {
            source: None,
            write_netrc: false,
            remove_netrc_entry: f.in_netrc,
            store_in_keyring: false,
            delete_from_keyring: f.recorded_keyring && f.in_keyring,
            keep_netrc_line: false,
            has_token: true,
        },
    }
}

/// Whether moving the token out of the netrc also takes back the `netrc-file` line: only when
/// `use` added that line (`ours`), no other recorded cache uses that netrc (`shared`), and the
/// netrc is left without entries (`emptied`). Otherwise the line would keep hiding the daemon's
/// netrc for nothing, or break another cache.
pub fn drop_netrc_line(plan: &TokenPlan, ours: bool, shared: bool, emptied: bool) -> bool {
    plan.remove_netrc_entry && ours && !shared && emptied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(keyring: bool, recorded_keyring: bool, given: bool, in_netrc: bool) -> TokenFacts {
        TokenFacts {
            keyring,
            recorded_keyring,
            given,
            in_netrc,
            in_keyring: recorded_keyring,
            netrc_file: true,
        }
    }

    #[test]
    fn where_the_token_goes() {
        use TokenSource::*;
        // (keyring, was keyring, given, in netrc) -> (source, write netrc, remove entry,
        // store in keyring, delete from keyring, keep netrc-file line)
        let table = [
            // First use with a token, netrc store.
            (
                (false, false, true, false),
                (Some(Given), true, false, false, false, true),
            ),
            // Re-run without a token: the entry stays, nothing written.
            (
                (false, false, false, true),
                (None, false, false, false, false, true),
            ),
            // No token at all (public cache).
            (
                (false, false, false, false),
                (None, false, false, false, false, false),
            ),
            // Keyring from the start.
            (
                (true, false, true, false),
                (Some(Given), false, false, true, false, false),
            ),
            // Migration netrc -> keyring, no new token: it moves.
            (
                (true, false, false, true),
                (Some(FromNetrc), false, true, true, false, false),
            ),
            // Migration with a new token: the new one goes to the keyring, the entry goes.
            (
                (true, false, true, true),
                (Some(Given), false, true, true, false, false),
            ),
            // Back from keyring to netrc: the keyring's token moves, its copy is deleted.
            (
                (false, true, false, false),
                (Some(FromKeyring), true, false, false, true, true),
            ),
            // Keyring stays keyring, no token given: nothing changes.
            (
                (true, true, false, false),
                (None, false, false, false, false, false),
            ),
        ];
        for ((k, rk, g, n), want) in table {
            let p = token_plan(facts(k, rk, g, n));
            assert_eq!(
                (
                    p.source,
                    p.write_netrc,
                    p.remove_netrc_entry,
                    p.store_in_keyring,
                    p.delete_from_keyring,
                    p.keep_netrc_line
                ),
                want,
                "keyring {k}, was keyring {rk}, given {g}, in netrc {n}"
            );
        }
    }

    #[test]
    fn the_proxy_route_keeps_no_token_in_any_netrc() {
        use TokenSource::*;
        // (route, command, keyring, was keyring, given, in netrc) -> (source, write netrc,
        // remove entry, store in keyring, delete from keyring, keep netrc-file line)
        let rows = [
            // The netrc route is the plain plan.
            (
                (Route::Netrc, false, false, false, true, false),
                (Some(Given), true, false, false, false, true),
            ),
            // Moving a netrc token to the proxy: into the keyring, out of the netrc.
            (
                (Route::Proxy, false, false, false, false, true),
                (Some(FromNetrc), false, true, true, false, false),
            ),
            // A Bearer token given for the proxy: the keyring only.
            (
                (Route::Proxy, false, true, false, true, false),
                (Some(Given), false, false, true, false, false),
            ),
            // A command replaces a netrc entry and a keyring copy: both go, nothing is stored.
            (
                (Route::Proxy, true, true, false, false, true),
                (None, false, true, false, false, false),
            ),
            (
                (Route::Proxy, true, true, true, false, false),
                (None, false, false, false, true, false),
            ),
        ];
        for ((route, command, k, rk, g, n), want) in rows {
            let p = token_plan_on(route, command, facts(k, rk, g, n));
            assert_eq!(
                (
                    p.source,
                    p.write_netrc,
                    p.remove_netrc_entry,
                    p.store_in_keyring,
                    p.delete_from_keyring,
                    p.keep_netrc_line
                ),
                want,
                "{route:?} command {command}, keyring {k}, was {rk}, given {g}, netrc {n}"
            );
            assert!(p.has_token);
            if route == Route::Proxy {
                assert!(!p.write_netrc && !p.keep_netrc_line);
            }
        }
    }

    #[test]
    fn no_netrc_file_means_no_netrc_write() {
        let p = token_plan(TokenFacts {
            netrc_file: false,
            ..facts(false, false, true, false)
        });
        assert!(!p.write_netrc && p.has_token);
    }

    #[test]
    fn the_netrc_file_line_goes_only_when_use_added_it_and_nothing_else_needs_it() {
        let moved = token_plan(facts(true, false, false, true));
        assert!(drop_netrc_line(&moved, true, false, true));
        for (ours, shared, emptied) in [
            (false, false, true),
            (true, true, true),
            (true, false, false),
        ] {
            assert!(!drop_netrc_line(&moved, ours, shared, emptied));
        }
        let stays = token_plan(facts(false, false, true, false));
        assert!(!drop_netrc_line(&stays, true, false, true));
    }

    #[test]
    fn the_netrc_file_follows_mode_and_existing_lines() {
        let sys = Path::new("/etc/nix/netrc");
        let conf = Path::new("/home/u/.config/nix/nix.conf");
        let base = NetrcFacts {
            substituter_only: false,
            system: false,
            system_netrc: sys,
            conf_path: conf,
            configured: None,
            wanted: None,
        };
        let t = |f: NetrcFacts| netrc_target(f).unwrap();
        let user_netrc = PathBuf::from("/home/u/.config/nix/netrc");
        assert_eq!(
            t(base),
            NetrcTarget {
                path: Some(user_netrc.clone()),
                line: Some(user_netrc.clone())
            }
        );
        let mine = Path::new("/home/u/my-netrc");
        assert_eq!(
            t(NetrcFacts {
                configured: Some(mine),
                ..base
            }),
            NetrcTarget {
                path: Some(mine.to_path_buf()),
                line: None
            }
        );
        assert!(
            netrc_target(NetrcFacts {
                configured: Some(mine),
                wanted: Some(Path::new("/other")),
                ..base
            })
            .is_err()
        );
        assert_eq!(
            t(NetrcFacts {
                system: true,
                ..base
            }),
            NetrcTarget {
                path: Some(sys.to_path_buf()),
                line: None
            }
        );
        assert_eq!(
            t(NetrcFacts {
                system: true,
                wanted: Some(Path::new("/etc/nix/other")),
                ..base
            })
            .line,
            Some(PathBuf::from("/etc/nix/other"))
        );
        assert_eq!(
            t(NetrcFacts {
                substituter_only: true,
                ..base
            }),
            NetrcTarget {
                path: None,
                line: None
            }
        );
    }
}
