//! Remote builders: the machines a `builders` setting names (with its `@file` references, as
//! Nix expands them), and what each does with its own substituters during a build.
//!
//! What a builder does was measured over real SSH (tests/e2e/builders.rs, Nix 2.8 builder,
//! 2.8 and 2.34 local daemons): the local daemon realises every input first (from our proxy or
//! with our netrc), then the build hook uploads what the builder lacks. Nothing of ours crosses
//! to the builder (`ssh-ng://` sends no settings, `ssh://` only build limits), and the
//! builder's 127.0.0.1 is not ours: it can never reach the loopback proxy.

use std::path::{Path, PathBuf};

/// How the build hook talks to a builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `ssh-ng://`: the daemon protocol over SSH (`nix-daemon --stdio` there).
    SshNg,
    /// `ssh://` (and a bare `host`): the legacy serve protocol (`nix-store --serve` there).
    Ssh,
    /// Anything else (a local store path, `daemon`, another scheme).
    Other,
}

/// One machine of a `builders` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The store URI as Nix uses it (a bare host gets `ssh://`).
    pub uri: String,
    pub protocol: Protocol,
    /// The host part (`user@host`), for SSH machines.
    pub host: Option<String>,
    /// Where it was listed: the setting itself (`None`) or a machines file.
    pub file: Option<PathBuf>,
}

impl Machine {
    /// `localhost`, for which Nix runs the remote command on this machine, without SSH.
    pub fn is_localhost(&self) -> bool {
        self.host
            .as_deref()
            .is_some_and(|h| h.rsplit('@').next() == Some("localhost"))
    }
}

/// A machines file a `builders` value refers to (`@FILE`) that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub file: PathBuf,
    pub reason: String,
}

/// The machines of a `builders` value, and the files that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machines {
    pub machines: Vec<Machine>,
    pub unreadable: Vec<Unreadable>,
}

/// Expands a `builders` value as Nix does: machines separated by newlines or `;`, `#` starts a
/// comment, `@FILE` reads more machines from FILE (a missing file is no machine). `read` returns
/// a file's text (`Ok(None)` when it does not exist).
pub fn parse(value: &str, read: &dyn Fn(&Path) -> std::io::Result<Option<String>>) -> Machines {
    let mut out = Machines::default();
    expand(value, None, read, &mut out, 0);
    out
}

fn expand(
    text: &str,
    file: Option<&Path>,
    read: &dyn Fn(&Path) -> std::io::Result<Option<String>>,
    out: &mut Machines,
    depth: usize,
) {
    for line in text.split(['\n', ';']) {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(path) = line.strip_prefix('@') {
            let path = PathBuf::from(path.trim());
            // A file that names itself (or a longer loop) would recurse forever in Nix too.
            if depth >= 8 {
                out.unreadable.push(Unreadable {
                    file: path,
                    reason: "machines files nested too deeply".into(),
                });
                continue;
            }
            match read(&path) {
                Ok(Some(text)) => expand(&text, Some(&path), read, out, depth + 1),
                Ok(None) => {}
                Err(e) => out.unreadable.push(Unreadable {
                    file: path,
                    reason: e.to_string(),
                }),
            }
            continue;
        }
        let Some(uri) = line.split_whitespace().next() else {
            continue;
        };
        out.machines.push(machine(uri, file));
    }
}

fn machine(uri: &str, file: Option<&Path>) -> Machine {
    let local = uri.starts_with('/')
        || ["auto", "daemon", "local"].contains(&uri)
        || ["auto?", "daemon?", "local?", "?"]
            .iter()
            .any(|p| uri.starts_with(p));
    let uri = if uri.contains("://") || local {
        uri.to_string()
    } else {
        format!("ssh://{uri}")
    };
    let (protocol, rest) = if let Some(rest) = uri.strip_prefix("ssh-ng://") {
        (Protocol::SshNg, Some(rest))
    } else if let Some(rest) = uri.strip_prefix("ssh://") {
        (Protocol::Ssh, Some(rest))
    } else {
        (Protocol::Other, None)
    };
    let host = rest.map(|r| r.split(['?', '/']).next().unwrap_or(r).to_string());
    Machine {
        uri,
        protocol,
        host,
        file: file.map(Path::to_path_buf),
    }
}

/// When a builder looks in its own substituters during a build. Measured (tests/e2e/builders.rs,
/// a builder whose own cache is unreachable): an `ssh-ng://` builder looks for the derivation's
/// output before building (`nix-daemon --stdio` builds with substitution on) whatever
/// `builders-use-substitutes` says, and also for every missing input with it; an `ssh://`
/// builder (`nix-store --serve` builds without substitution) only for the inputs, and only with
/// it. Each lookup in a cache it cannot reach costs about 5 s of retries once per connection
/// (one per build): Nix drops a cache that failed to open for the rest of that process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Never: every input comes from this machine over SSH.
    Never,
    /// For the missing inputs (then uploaded from here if it has none of them).
    Inputs,
    /// For the output only (its inputs are uploaded from here).
    Output,
    /// For the missing inputs and for the output.
    InputsAndOutput,
    /// Not an SSH builder: not known from here.
    Unknown,
}

/// What `machine` does with its own substituters, given `builders-use-substitutes`.
pub fn lookup(protocol: Protocol, builders_use_substitutes: bool) -> Lookup {
    match (protocol, builders_use_substitutes) {
        (Protocol::SshNg, true) => Lookup::InputsAndOutput,
        (Protocol::SshNg, false) => Lookup::Output,
        (Protocol::Ssh, true) => Lookup::Inputs,
        (Protocol::Ssh, false) => Lookup::Never,
        (Protocol::Other, _) => Lookup::Unknown,
    }
}

/// A boolean setting's value as Nix reads it (`true`/`false`; anything else is an error there,
/// so `None` here).
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// One layer of settings that set remote builds up, in Nix's order: the system's nix.conf, then
/// (when the daemon takes the user's settings) the user's nix.conf, `NIX_CONFIG` and the
/// command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    pub builders: Option<String>,
    pub use_substitutes: Option<String>,
}

/// The remote-build settings a command runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InForce {
    pub machines: Machines,
    /// `builders-use-substitutes` (default false).
    pub use_substitutes: bool,
}

/// What `layers` add up to (later layers win); `default_builders` is Nix's default value
/// (`@$NIX_CONF_DIR/machines`).
pub fn resolve(
    layers: &[Layer],
    default_builders: &str,
    read: &dyn Fn(&Path) -> std::io::Result<Option<String>>,
) -> InForce {
    let builders = layers
        .iter()
        .rev()
        .find_map(|l| l.builders.clone())
        .unwrap_or_else(|| default_builders.to_string());
    let use_substitutes = layers
        .iter()
        .rev()
        .find_map(|l| l.use_substitutes.as_deref().and_then(parse_bool))
        .unwrap_or(false);
    InForce {
        machines: parse(&builders, read),
        use_substitutes,
    }
}

/// The layer a Nix command line sets: `--builders V`, `--option builders V`,
/// `--builders-use-substitutes`, `--no-builders-use-substitutes`,
/// `--option builders-use-substitutes V` (the last one wins).
pub fn argv_layer(argv: &[std::ffi::OsString]) -> Layer {
    let mut layer = Layer::default();
    let args: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut i = 0;
    while i < args.len() {
        let next = |n: usize| args.get(i + n).cloned();
        match args[i].as_str() {
            "--builders" => {
                layer.builders = next(1);
                i += 1;
            }
            "--builders-use-substitutes" => layer.use_substitutes = Some("true".into()),
            "--no-builders-use-substitutes" => layer.use_substitutes = Some("false".into()),
            "--option" => {
                match next(1).as_deref() {
                    Some("builders") => layer.builders = next(2),
                    Some("builders-use-substitutes") => layer.use_substitutes = next(2),
                    _ => {}
                }
                i += 2;
            }
            // Everything after `--` is the program's or a path.
            "--" => break,
            _ => {}
        }
        i += 1;
    }
    layer
}

/// The layer a nix.conf text sets (`NIX_CONFIG`).
pub fn text_layer(text: &str) -> Layer {
    let conf = super::conf::NixConf::parse(text).ok();
    Layer {
        builders: conf.as_ref().and_then(|c| c.get("builders")),
        use_substitutes: conf.and_then(|c| c.get("builders-use-substitutes")),
    }
}

/// The layer a nix.conf (and its includes) sets.
pub fn view_layer(view: &super::setup::SettingsView) -> Layer {
    Layer {
        builders: view.scalar("builders"),
        use_substitutes: view.scalar("builders-use-substitutes"),
    }
}

/// Reads a machines file for [`parse`]: `Ok(None)` when it does not exist.
pub fn read_file(path: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The remote-build settings a command (`argv`, empty for none) of this user runs with.
pub fn for_command(setup: &super::setup::NixSetup, argv: &[std::ffi::OsString]) -> InForce {
    let mut layers = vec![view_layer(&setup.system)];
    // The daemon ignores builders settings from a user it does not trust (restricted
    // settings): only the system's count then.
    if setup.user_settings_honoured() {
        layers.push(view_layer(&super::setup::load_view(&setup.user_conf)));
        if let Ok(text) = std::env::var("NIX_CONFIG") {
            layers.push(text_layer(&text));
        }
        layers.push(argv_layer(argv));
    }
    resolve(&layers, &default_builders(&setup.system_conf), &read_file)
}

/// Nix's default `builders`: `@` and the `machines` file beside the system nix.conf.
pub fn default_builders(system_conf: &Path) -> String {
    format!("@{}", system_conf.with_file_name("machines").display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn reader(files: &[(&str, &str)]) -> impl Fn(&Path) -> std::io::Result<Option<String>> + use<> {
        let files: BTreeMap<PathBuf, String> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        move |p: &Path| {
            if p == Path::new("/root-only") {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "Permission denied",
                ));
            }
            Ok(files.get(p).cloned())
        }
    }

    fn uris(m: &Machines) -> Vec<&str> {
        m.machines.iter().map(|m| m.uri.as_str()).collect()
    }

    #[test]
    fn builders_values_expand_like_nix() {
        let read = reader(&[
            (
                "/etc/nix/machines",
                "# comment\nssh-ng://b1?remote-store=/x x86_64-linux - 2\n\n@/etc/nix/more\n",
            ),
            ("/etc/nix/more", "b2 aarch64-linux; root@b3 # trailing\n"),
            ("/loop", "@/loop\n"),
        ]);
        let m = parse("@/etc/nix/machines", &read);
        assert_eq!(
            uris(&m),
            ["ssh-ng://b1?remote-store=/x", "ssh://b2", "ssh://root@b3"]
        );
        assert_eq!(m.machines[0].protocol, Protocol::SshNg);
        assert_eq!(m.machines[0].host.as_deref(), Some("b1"));
        assert_eq!(m.machines[1].protocol, Protocol::Ssh);
        assert_eq!(m.machines[2].host.as_deref(), Some("root@b3"));
        assert_eq!(
            m.machines[1].file.as_deref(),
            Some(Path::new("/etc/nix/more"))
        );
        assert!(m.unreadable.is_empty());

        // The default value with no machines file: no builder. An inline list with `;`.
        assert_eq!(parse("@/etc/nix/absent", &read), Machines::default());
        let m = parse("ssh://a x86_64-linux ; ssh-ng://localhost", &read);
        assert_eq!(uris(&m), ["ssh://a", "ssh-ng://localhost"]);
        assert!(m.machines[1].is_localhost() && !m.machines[0].is_localhost());
        assert!(m.machines.iter().all(|m| m.file.is_none()));

        // Local stores are not SSH builders; unreadable and looping files are reported.
        let m = parse("/some/store; daemon; @/root-only; @/loop", &read);
        assert_eq!(uris(&m), ["/some/store", "daemon"]);
        assert!(m.machines.iter().all(|m| m.protocol == Protocol::Other));
        assert_eq!(m.unreadable.len(), 2, "{m:?}");
        assert_eq!(m.unreadable[0].file, Path::new("/root-only"));
        assert!(m.unreadable[1].reason.contains("nested"));
    }

    #[test]
    fn what_a_builder_looks_up_in_its_own_caches() {
        use Lookup::*;
        let table = [
            (Protocol::SshNg, true, InputsAndOutput),
            (Protocol::SshNg, false, Output),
            (Protocol::Ssh, true, Inputs),
            (Protocol::Ssh, false, Never),
            (Protocol::Other, true, Unknown),
            (Protocol::Other, false, Unknown),
        ];
        for (protocol, bus, want) in table {
            assert_eq!(lookup(protocol, bus), want, "{protocol:?} {bus}");
        }
        assert_eq!(parse_bool(" true"), Some(true));
        assert_eq!(parse_bool("1"), None);
    }

    #[test]
    fn later_layers_win_and_the_command_line_is_read() {
        let read = reader(&[("/etc/nix/machines", "ssh://sys\n")]);
        let os = |a: &[&str]| -> Vec<std::ffi::OsString> { a.iter().map(Into::into).collect() };
        let system = Layer {
            builders: None,
            use_substitutes: Some("true".into()),
        };
        // Nothing set: Nix's default machines file, builders-use-substitutes false.
        let r = resolve(&[], "@/etc/nix/machines", &read);
        assert_eq!(uris(&r.machines), ["ssh://sys"]);
        assert!(!r.use_substitutes);
        let r = resolve(std::slice::from_ref(&system), "@/etc/nix/machines", &read);
        assert!(r.use_substitutes);
        let argv = argv_layer(&os(&[
            "nix-build",
            "--builders",
            "ssh-ng://cli",
            "--option",
            "builders-use-substitutes",
            "false",
            "x.nix",
        ]));
        let r = resolve(&[system.clone(), argv], "@/etc/nix/machines", &read);
        assert_eq!(uris(&r.machines), ["ssh-ng://cli"]);
        assert!(!r.use_substitutes);
        let argv = argv_layer(&os(&[
            "nix",
            "build",
            "--no-builders-use-substitutes",
            "--builders-use-substitutes",
            "--option",
            "builders",
            "",
            "--",
            "--builders",
            "x",
        ]));
        assert_eq!(argv.builders.as_deref(), Some(""));
        assert_eq!(argv.use_substitutes.as_deref(), Some("true"));
        let r = resolve(&[argv], "@/etc/nix/machines", &read);
        assert!(r.machines.machines.is_empty() && r.use_substitutes);
        let env = text_layer("builders = ssh://env\nbuilders-use-substitutes = true\n");
        assert_eq!(env.builders.as_deref(), Some("ssh://env"));
        assert_eq!(
            default_builders(Path::new("/etc/nix/nix.conf")),
            "@/etc/nix/machines"
        );
    }
}
