//! Which way an HTTPS cache's credential reaches the nix-daemon: a netrc file Nix reads itself,
//! or the loopback proxy that adds the credential to each request. Pure decisions (the route
//! and why, the flags that contradict each other) so that `use`, `list`, `doctor`, `--dry-run`
//! and `service install` tell the same story; `nix/credential_plan.rs` then decides where the
//! token itself goes.

use anyhow::{Result, bail};

/// The route `use --route` asks for (recorded as `route` in config.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RouteChoice {
    /// netrc for a static Basic token in a netrc file, the proxy otherwise
    #[default]
    Auto,
    /// A netrc file that Nix reads itself (Basic auth only)
    Netrc,
    /// The loopback proxy adds the credential to each request
    Proxy,
}

impl RouteChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteChoice::Auto => "auto",
            RouteChoice::Netrc => "netrc",
            RouteChoice::Proxy => "proxy",
        }
    }

    pub fn parse(s: &str) -> Option<RouteChoice> {
        [RouteChoice::Auto, RouteChoice::Netrc, RouteChoice::Proxy]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// How the token is presented to the cache (`use --auth`, recorded as `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Auth {
    /// `Authorization: Basic` with the login and the token (what netrc gives)
    #[default]
    Basic,
    /// `Authorization: Bearer TOKEN` (only through the proxy)
    Bearer,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::Basic => "basic",
            Auth::Bearer => "bearer",
        }
    }

    pub fn parse(s: &str) -> Option<Auth> {
        [Auth::Basic, Auth::Bearer]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// The route a cache takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Netrc,
    Proxy,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Netrc => "netrc",
            Route::Proxy => "proxy",
        }
    }
}

/// Why a cache takes its route (for `list`, `doctor`, `--dry-run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// `--route netrc` or `--route proxy`.
    Asked,
    /// A Bearer token: netrc can only give Basic.
    Bearer,
    /// The token comes from a command, run again when it expires.
    Command,
    /// A keyring token and the background service is installed: plain `nix` reaches it.
    KeyringService,
    /// A keyring token without the background service: `exec` forwards a temporary netrc.
    KeyringExec,
    /// A static Basic token in a netrc file: works with no process running.
    StaticBasic,
    /// A public cache: nothing to add.
    NoToken,
}

impl Why {
    pub fn text(self, route: Route) -> &'static str {
        match (self, route) {
            (Why::Asked, Route::Proxy) => "--route proxy was asked",
            (Why::Asked, Route::Netrc) => "--route netrc was asked",
            (Why::Bearer, _) => "a Bearer token cannot be given through netrc",
            (Why::Command, _) => "the token comes from a command, run again when it expires",
            (Why::KeyringService, _) => {
                "the token is in the keyring and the background service is installed"
            }
            (Why::KeyringExec, _) => {
                "the token is in the keyring and no background service is installed: `exec` forwards a temporary netrc"
            }
            (Why::StaticBasic, _) => {
                "a static Basic token in a netrc file works with no process running"
            }
            (Why::NoToken, _) => "the cache needs no token",
        }
    }
}

/// What decides the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteFacts {
    pub asked: RouteChoice,
    pub auth: Auth,
    /// The token comes from `--token-command`.
    pub command: bool,
    /// The token is kept in the keyring (or asked to go there).
    pub keyring: bool,
    /// There is a token at all (given, recorded, or a command).
    pub token: bool,
    /// The background service is installed (`service install`).
    pub service: bool,
}

/// The command that gives a proxy-route HTTPS cache a working credential again: `use NAME`
/// once its token command works (run it yourself to see why it does not), else a new token.
pub fn credential_fix(name: &str, token_command: bool) -> String {
    if token_command {
        format!("nixstore-auth use {name}")
    } else {
        format!("nixstore-auth secret set {name} --token-stdin")
    }
}

/// The route and why. `auto` keeps what works today (netrc, no process) for a static Basic
/// token, and takes the proxy where netrc cannot carry the credential (Bearer, a command) or
/// where the proxy is the only way plain `nix` reaches a keyring token. Contradictions are
/// rejected earlier by [`check_flags`]; here an asked route simply wins.
pub fn route(f: RouteFacts) -> (Route, Why) {
    match f.asked {
        RouteChoice::Netrc => (Route::Netrc, Why::Asked),
        RouteChoice::Proxy => (Route::Proxy, Why::Asked),
        RouteChoice::Auto if f.command => (Route::Proxy, Why::Command),
        RouteChoice::Auto if f.auth == Auth::Bearer => (Route::Proxy, Why::Bearer),
        RouteChoice::Auto if !f.token => (Route::Netrc, Why::NoToken),
        RouteChoice::Auto if f.keyring && f.service => (Route::Proxy, Why::KeyringService),
        RouteChoice::Auto if f.keyring => (Route::Netrc, Why::KeyringExec),
        RouteChoice::Auto => (Route::Netrc, Why::StaticBasic),
    }
}

/// nix.conf for a cache on `route`: the netrc route lists the cache's own URL as a
/// substituter; the proxy route does not (the daemon gets the proxy's URL from `exec` or the
/// background service's include file, and would meet only a 401 at the real one). One rule
/// for `use` and for `service install`/`uninstall`, which move keyring caches between routes.
/// Returns whether anything changed.
pub fn edit_conf(conf: &mut super::conf::NixConf, route: Route, url: &str) -> Result<bool> {
    Ok(match route {
        Route::Netrc => conf.add_value("substituters", url)?,
        Route::Proxy => {
            let a = conf.remove_value("substituters", url);
            // `use` writes the URL as given; with a trailing slash it is the same cache.
            let b = conf.remove_value("substituters", &format!("{url}/"));
            a || b
        }
    })
}

/// What `use` was told about an HTTPS cache's credential (flags as typed; `None`: not given).
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub route: Option<RouteChoice>,
    pub auth: Option<Auth>,
    pub token_command: bool,
    pub login: bool,
    /// `--secret-store netrc` was typed.
    pub netrc_store: bool,
}

/// The combinations that cannot work, as usage errors: a Bearer or command token through netrc,
/// a netrc login for a Bearer token, the netrc store for a token that must not be in a netrc.
pub fn check_flags(f: Flags) -> Result<()> {
    let netrc_route = f.route == Some(RouteChoice::Netrc);
    let bearer = f.auth == Some(Auth::Bearer);
    if bearer && netrc_route {
        bail!("--auth bearer cannot be used with --route netrc: netrc gives only Basic auth");
    }
    if f.token_command && netrc_route {
        bail!(
            "--token-command cannot be used with --route netrc: a command's token reaches Nix only through the proxy"
        );
    }
    if bearer && f.login {
        bail!("--login cannot be used with --auth bearer: a Bearer token has no login");
    }
    if f.netrc_store && (bearer || f.token_command || f.route == Some(RouteChoice::Proxy)) {
        let what = if bearer {
            "--auth bearer"
        } else if f.token_command {
            "--token-command"
        } else {
            "--route proxy"
        };
        bail!(
            "--secret-store netrc cannot be used with {what}: the proxy route keeps no token in any netrc"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_and_why() {
        use RouteChoice::*;
        let base = RouteFacts {
            asked: Auto,
            auth: Auth::Basic,
            command: false,
            keyring: false,
            token: true,
            service: false,
        };
        // (asked, bearer, command, keyring, token, service) -> (route, why)
        let rows = [
            (
                (Auto, false, false, false, true, false),
                (Route::Netrc, Why::StaticBasic),
            ),
            (
                (Auto, false, false, false, true, true),
                (Route::Netrc, Why::StaticBasic),
            ),
            (
                (Auto, true, false, false, true, false),
                (Route::Proxy, Why::Bearer),
            ),
            (
                (Auto, true, false, true, true, true),
                (Route::Proxy, Why::Bearer),
            ),
            (
                (Auto, false, true, false, true, false),
                (Route::Proxy, Why::Command),
            ),
            (
                (Auto, true, true, false, true, false),
                (Route::Proxy, Why::Command),
            ),
            (
                (Auto, false, false, true, true, false),
                (Route::Netrc, Why::KeyringExec),
            ),
            (
                (Auto, false, false, true, true, true),
                (Route::Proxy, Why::KeyringService),
            ),
            (
                (Auto, false, false, false, false, true),
                (Route::Netrc, Why::NoToken),
            ),
            (
                (Auto, false, false, true, false, true),
                (Route::Netrc, Why::NoToken),
            ),
            (
                (Netrc, false, false, true, true, true),
                (Route::Netrc, Why::Asked),
            ),
            (
                (Proxy, false, false, false, true, false),
                (Route::Proxy, Why::Asked),
            ),
            (
                (Proxy, false, false, false, false, false),
                (Route::Proxy, Why::Asked),
            ),
        ];
        for ((asked, bearer, command, keyring, token, service), want) in rows {
            let f = RouteFacts {
                asked,
                auth: if bearer { Auth::Bearer } else { Auth::Basic },
                command,
                keyring,
                token,
                service,
            };
            assert_eq!(route(f), want, "{f:?}");
            assert!(!want.1.text(want.0).is_empty());
        }
        assert_eq!(route(base).0, Route::Netrc);
    }

    #[test]
    fn contradicting_flags_are_usage_errors() {
        use RouteChoice::*;
        let ok = [
            Flags::default(),
            Flags {
                route: Some(Proxy),
                auth: Some(Auth::Bearer),
                token_command: true,
                ..Flags::default()
            },
            Flags {
                route: Some(Netrc),
                auth: Some(Auth::Basic),
                login: true,
                netrc_store: true,
                ..Flags::default()
            },
            Flags {
                auth: Some(Auth::Basic),
                login: true,
                ..Flags::default()
            },
        ];
        for f in ok {
            check_flags(f).unwrap();
        }
        let bad = [
            (
                Flags {
                    route: Some(Netrc),
                    auth: Some(Auth::Bearer),
                    ..Flags::default()
                },
                "--auth bearer cannot be used with --route netrc",
            ),
            (
                Flags {
                    route: Some(Netrc),
                    token_command: true,
                    ..Flags::default()
                },
                "--token-command cannot be used with --route netrc",
            ),
            (
                Flags {
                    auth: Some(Auth::Bearer),
                    login: true,
                    ..Flags::default()
                },
                "--login cannot be used with --auth bearer",
            ),
            (
                Flags {
                    auth: Some(Auth::Bearer),
                    netrc_store: true,
                    ..Flags::default()
                },
                "--secret-store netrc cannot be used with --auth bearer",
            ),
            (
                Flags {
                    token_command: true,
                    netrc_store: true,
                    ..Flags::default()
                },
                "--secret-store netrc cannot be used with --token-command",
            ),
            (
                Flags {
                    route: Some(Proxy),
                    netrc_store: true,
                    ..Flags::default()
                },
                "--secret-store netrc cannot be used with --route proxy",
            ),
        ];
        for (f, needle) in bad {
            let e = check_flags(f).unwrap_err().to_string();
            assert!(e.contains(needle), "{f:?}: {e}");
        }
    }

    #[test]
    fn nix_conf_lists_the_real_url_only_on_the_netrc_route() {
        use super::super::conf::NixConf;
        let url = "https://cache.example.org";
        let mut c = NixConf::parse("# mine\nkeep-outputs = true\n").unwrap();
        assert!(edit_conf(&mut c, Route::Netrc, url).unwrap());
        assert!(
            c.to_text()
                .contains("extra-substituters = https://cache.example.org")
        );
        assert!(!edit_conf(&mut c, Route::Netrc, url).unwrap());
        assert!(edit_conf(&mut c, Route::Proxy, url).unwrap());
        assert_eq!(c.to_text(), "# mine\nkeep-outputs = true\n");
        assert!(!edit_conf(&mut c, Route::Proxy, url).unwrap());
        let mut slash =
            NixConf::parse("extra-substituters = https://cache.example.org/\n").unwrap();
        assert!(edit_conf(&mut slash, Route::Proxy, url).unwrap());
        assert!(!slash.to_text().contains("cache.example.org"));
    }

    #[test]
    fn names_round_trip() {
        for r in [RouteChoice::Auto, RouteChoice::Netrc, RouteChoice::Proxy] {
            assert_eq!(RouteChoice::parse(r.as_str()), Some(r));
        }
        for a in [Auth::Basic, Auth::Bearer] {
            assert_eq!(Auth::parse(a.as_str()), Some(a));
        }
        assert_eq!(RouteChoice::parse("via"), None);
        assert_eq!(Auth::parse("Basic"), None);
    }
}
