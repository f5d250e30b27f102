//! The settings a launch forwards to Nix: as `NIX_CONFIG` text (reaches every Nix process below
//! the command, scripts included) and, for the non-secret ones, as `--option NAME VALUE` on a Nix
//! command line. The Nix client drops settings it does not know before talking to the daemon,
//! so only settings the installed client knows are forwarded.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;

/// One setting to forward.
#[derive(Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    pub value: String,
    /// Carries a secret (the proxy URL holds a token): `NIX_CONFIG` only, never argv.
    pub secret: bool,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = if self.secret {
            "<redacted>"
        } else {
            self.value.as_str()
        };
        write!(f, "{} = {value}", self.name)
    }
}

impl Setting {
    pub fn new(name: &str, value: impl Into<String>, secret: bool) -> Setting {
        Setting {
            name: name.to_string(),
            value: value.into(),
            secret,
        }
    }
}

/// Nix commands that take `--option NAME VALUE`.
pub fn is_nix_command(argv0: &std::ffi::OsStr) -> bool {
    let name = Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    matches!(
        name.as_str(),
        "nix"
            | "nix-build"
            | "nix-store"
            | "nix-shell"
            | "nix-env"
            | "nix-instantiate"
            | "nix-copy-closure"
    )
}

/// `NIX_CONFIG` with our settings appended to the user's own value (later lines win in Nix, and
/// `extra-` lines add to what came before).
pub fn nix_config(existing: Option<&str>, settings: &[Setting]) -> String {
    let mut out = existing.unwrap_or("").to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for s in settings {
        out.push_str(&s.name);
        out.push_str(" = ");
        out.push_str(&s.value);
        out.push('\n');
    }
    out
}

/// The command line with `--option NAME VALUE` for each non-secret setting: right after the
/// subcommand for `nix SUB ...`, right after the program for the `nix-*` commands.
pub fn with_options(argv: &[OsString], settings: &[Setting]) -> Vec<OsString> {
    let public: Vec<&Setting> = settings.iter().filter(|s| !s.secret).collect();
    if argv.is_empty() || public.is_empty() || !is_nix_command(&argv[0]) {
        return argv.to_vec();
    }
    let is_nix = Path::new(&argv[0]).file_name().is_some_and(|n| n == "nix");
    // `nix build ...`: after `build`; `nix --flag build`: right after `nix`, where global
    // flags are accepted as well.
    let at = if is_nix && argv.len() > 1 && !argv[1].to_string_lossy().starts_with('-') {
        2
    } else {
        1
    };
    let mut out: Vec<OsString> = argv[..at].to_vec();
    for s in public {
        out.push("--option".into());
        out.push(s.name.clone().into());
        out.push(s.value.clone().into());
    }
    out.extend_from_slice(&argv[at..]);
    out
}

/// Keeps the settings the installed client knows (`extra-X` counts as known when `X` is).
pub fn known_only(settings: Vec<Setting>, known: &BTreeSet<String>) -> (Vec<Setting>, Vec<String>) {
    let mut keep = Vec::new();
    let mut dropped = Vec::new();
    for s in settings {
        let base = s.name.strip_prefix("extra-").unwrap_or(&s.name);
        if known.contains(base) {
            keep.push(s);
        } else {
            dropped.push(s.name);
        }
    }
    (keep, dropped)
}

/// What we know, from this machine's settings alone, about remote builds of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuilderFacts {
    /// The command reaches a private cache through us (the proxy's URL or our netrc).
    pub private_caches: bool,
    /// The daemon takes this user's settings (trusted, or no daemon in between).
    pub trusted: bool,
    /// Remote builders are configured for the command.
    pub builders: bool,
    /// One of them speaks the legacy `ssh://` protocol.
    pub legacy_ssh: bool,
    /// `builders-use-substitutes` in force.
    pub use_substitutes: bool,
}

impl BuilderFacts {
    pub fn new(private_caches: bool, trusted: bool, in_force: &super::builders::InForce) -> Self {
        let machines = &in_force.machines.machines;
        BuilderFacts {
            private_caches,
            trusted,
            builders: !machines.is_empty(),
            legacy_ssh: machines
                .iter()
                .any(|m| m.protocol == super::builders::Protocol::Ssh),
            use_substitutes: in_force.use_substitutes,
        }
    }
}

/// Whether a command that uses private caches forwards `builders-use-substitutes = false`, and
/// why not. Measured over real SSH (tests/e2e/builders.rs, a builder whose own cache is
/// unreachable, on Nix 2.8 and 2.34 as the local daemon): an `ssh-ng://` builder took about
/// 5 s with the setting and 5 s without it (it looks for the output in its own caches before
/// building, whatever the setting says); an `ssh://` builder 5 s with it and under 1 s without.
/// What forwarding would cost does not show on loopback: every input the builder could fetch
/// from its own (public) caches would be uploaded from this machine over SSH instead. The
/// builder never gets our private paths by itself anyway: the local daemon substitutes them
/// first and uploads what the builder lacks. So nothing is forwarded; each case says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuilderDecision {
    /// No private cache in the command, or no remote builder: nothing to decide.
    NotInPlay,
    /// The daemon does not take this user's `builders-use-substitutes` (a restricted setting):
    /// the administrator's settings apply, ours would be ignored with a warning.
    AdministratorsSetting,
    /// `builders-use-substitutes` is already false: the local daemon uploads every input.
    AlreadyUploaded,
    /// Only `ssh-ng://` builders: they look in their own caches for the output anyway, so
    /// forwarding saves nothing and costs the uploads.
    SavesNothing,
    /// An `ssh://` builder: forwarding would save only the retries of a builder whose own caches
    /// are unreachable (a misconfiguration `doctor` points out), at the price of uploading every
    /// input it could fetch itself.
    NotWorthTheUploads,
}

impl BuilderDecision {
    /// The settings to forward for remote builders: none in every case (see the variants).
    /// `exec` adds them to what it forwards, and so should the background service's include
    /// file; this is the one place to change if a Nix ever makes forwarding pay.
    pub fn settings(self) -> Vec<Setting> {
        Vec::new()
    }

    /// For `-v` output.
    pub fn describe(self) -> &'static str {
        match self {
            BuilderDecision::NotInPlay => "no remote builder in play",
            BuilderDecision::AdministratorsSetting => {
                "remote builders: the nix-daemon applies the administrator's builders-use-substitutes (it ignores yours)"
            }
            BuilderDecision::AlreadyUploaded => {
                "remote builders get every input uploaded from here (builders-use-substitutes = false)"
            }
            BuilderDecision::SavesNothing | BuilderDecision::NotWorthTheUploads => {
                "remote builders look in their own caches first; inputs from private caches are substituted here and uploaded when they miss (builders-use-substitutes left as it is)"
            }
        }
    }
}

/// The decision for remote builders (see [`BuilderDecision`]).
pub fn builder_decision(f: &BuilderFacts) -> BuilderDecision {
    if !f.private_caches || !f.builders {
        BuilderDecision::NotInPlay
    } else if !f.trusted {
        BuilderDecision::AdministratorsSetting
    } else if !f.use_substitutes {
        BuilderDecision::AlreadyUploaded
    } else if f.legacy_ssh {
        BuilderDecision::NotWorthTheUploads
    } else {
        BuilderDecision::SavesNothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    fn settings() -> Vec<Setting> {
        vec![
            Setting::new("extra-substituters", "http://127.0.0.1:1/SECRET/c", true),
            Setting::new("narinfo-cache-negative-ttl", "0", false),
        ]
    }

    #[test]
    fn options_go_after_the_subcommand_and_never_carry_secrets() {
        let out = with_options(&os(&["nix", "build", ".#a"]), &settings());
        assert_eq!(
            out,
            os(&[
                "nix",
                "build",
                "--option",
                "narinfo-cache-negative-ttl",
                "0",
                ".#a"
            ])
        );
        let out = with_options(
            &os(&["/usr/bin/nix-store", "-r", "/nix/store/x"]),
            &settings(),
        );
        assert_eq!(
            out,
            os(&[
                "/usr/bin/nix-store",
                "--option",
                "narinfo-cache-negative-ttl",
                "0",
                "-r",
                "/nix/store/x"
            ])
        );
        let out = with_options(&os(&["nix", "--verbose", "build"]), &settings());
        assert_eq!(out[1], OsString::from("--option"));
        assert!(!out.iter().any(|a| a.to_string_lossy().contains("SECRET")));
        assert_eq!(
            with_options(&os(&["sh", "-c", "nix build"]), &settings()),
            os(&["sh", "-c", "nix build"])
        );
    }

    #[test]
    fn nix_config_appends_to_the_users_value() {
        let t = nix_config(Some("max-jobs = 2"), &settings());
        assert_eq!(
            t,
            "max-jobs = 2\nextra-substituters = http://127.0.0.1:1/SECRET/c\nnarinfo-cache-negative-ttl = 0\n"
        );
        assert!(nix_config(None, &[]).is_empty());
        assert!(!format!("{:?}", settings()).contains("SECRET"));
    }

    #[test]
    fn unknown_settings_are_dropped() {
        let known = BTreeSet::from(["substituters".to_string(), "netrc-file".to_string()]);
        let (keep, dropped) = known_only(
            vec![
                Setting::new("extra-substituters", "x", true),
                Setting::new("impure-env", "A=b", true),
                Setting::new("netrc-file", "/f", false),
            ],
            &known,
        );
        assert_eq!(keep.len(), 2);
        assert_eq!(dropped, vec!["impure-env".to_string()]);
    }

    #[test]
    fn nothing_is_forwarded_for_remote_builders_and_each_case_says_why() {
        use BuilderDecision::*;
        // (private caches, trusted, builders, legacy ssh://, builders-use-substitutes) -> why
        let table = [
            ((false, true, true, true, true), NotInPlay),
            ((true, true, false, false, true), NotInPlay),
            ((true, false, true, false, true), AdministratorsSetting),
            ((true, false, true, true, false), AdministratorsSetting),
            ((true, true, true, false, false), AlreadyUploaded),
            ((true, true, true, true, false), AlreadyUploaded),
            ((true, true, true, false, true), SavesNothing),
            ((true, true, true, true, true), NotWorthTheUploads),
        ];
        for ((private_caches, trusted, builders, legacy_ssh, use_substitutes), want) in table {
            let facts = BuilderFacts {
                private_caches,
                trusted,
                builders,
                legacy_ssh,
                use_substitutes,
            };
            let got = builder_decision(&facts);
            assert_eq!(got, want, "{facts:?}");
            assert!(got.settings().is_empty(), "{facts:?}");
            assert!(!got.describe().is_empty());
        }
    }
}
