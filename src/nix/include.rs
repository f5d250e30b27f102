//! The include file through which the user's Nix learns the background proxy's URLs: one
//! line `!include nixstore-auth.conf` in the user's nix.conf (relative: the file next to it;
//! a missing file is ignored by Nix), and that file, mode 0600, holding the
//! `extra-substituters` URLs (with the proxy's secret), their public keys and the settings the
//! daemon must be told. A trusted user's Nix client forwards everything it reads, included
//! files too, to the nix-daemon, so plain `nix` commands (direnv, editors, scripts, cron)
//! reach the caches with no wrapper. The secret URL is never in nix.conf itself.
//!
//! The text is rendered here, purely, from what the caller gathered (see `service/include.rs`).

use std::path::{Path, PathBuf};

use super::conf::NixConf;

/// The include file's name, next to the user's nix.conf.
pub const FILE_NAME: &str = "nixstore-auth.conf";

/// The line in the user's nix.conf.
pub fn line() -> String {
    format!("!include {FILE_NAME}")
}

/// The include file for the nix.conf at `nix_conf`.
pub fn path_for(nix_conf: &Path) -> PathBuf {
    nix_conf.parent().unwrap_or(Path::new(".")).join(FILE_NAME)
}

/// One cache the proxy serves: its URL (with the secret) and the keys that sign it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub url: String,
    pub public_keys: Vec<String>,
}

/// Where the include file gets the URLs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urls<'a> {
    /// In the file itself: a service manager listens on the port for good (socket activation).
    Here,
    /// From a file in the runtime directory (`!include` of that absolute path) that the
    /// running background proxy writes and removes when it exits: without a service manager,
    /// a proxy that is down must take its URLs with it (Nix 2.8 fails every build while it
    /// knows a cache it cannot reach, `fallback` or not).
    Runtime(&'a Path),
}

/// The include file's text.
///
/// `fallback = true`: where a listed URL cannot be reached (a stopped socket unit), Nix 2.34
/// builds instead of failing (probed: without it, 2.34 fails too). No
/// `narinfo-cache-negative-ttl`: misses answered while a person is needed are forgotten by a
/// new URL instead (`proxy/urls.rs`), so that every other cache keeps its narinfo cache.
/// `builders`: what the remote-builder decision forwards (`forward::builder_decision`, the one
/// rule `exec` follows too).
pub fn render(served: &[Served], urls: Urls<'_>, builders: &[super::forward::Setting]) -> String {
    let mut out = String::from(
        "# Written by nixstore-auth (`nixstore-auth service install`) and rewritten by `use`,\n\
         # `remove`, `login` and `proxy rotate-secret`: edits are lost. It may hold your proxy's\n\
         # URL secret: keep it private (0600). `nixstore-auth service uninstall` removes it.\n",
    );
    if served.is_empty() {
        out.push_str(
            "# No S3 cache is recorded yet: nothing is served until `nixstore-auth use s3://...`.\n",
        );
        return out;
    }
    let mut keys: Vec<&str> = Vec::new();
    for k in served.iter().flat_map(|s| &s.public_keys) {
        if !keys.contains(&k.as_str()) {
            keys.push(k);
        }
    }
    if !keys.is_empty() {
        out.push_str(&format!("extra-trusted-public-keys = {}\n", keys.join(" ")));
    }
    out.push_str("fallback = true\n");
    for b in builders {
        out.push_str(&format!("{} = {}\n", b.name, b.value));
    }
    match urls {
        Urls::Here => out.push_str(&substituters(served)),
        Urls::Runtime(path) => out.push_str(&format!(
            "# The URLs, while the background proxy runs (it writes and removes this file):\n\
             !include {}\n",
            path.display()
        )),
    }
    out
}

/// The runtime file of [`Urls::Runtime`]: the URLs alone, and the pid of the proxy that keeps
/// it (so that only that proxy's exit removes it).
pub fn render_runtime(served: &[Served], pid: u32) -> String {
    format!("{}\n{}", runtime_owner_line(pid), substituters(served))
}

/// The runtime file's first line, naming the proxy that wrote it.
pub fn runtime_owner_line(pid: u32) -> String {
    format!("# Written by the running nixstore-auth proxy (pid {pid}); removed when it exits.")
}

fn substituters(served: &[Served]) -> String {
    let urls: Vec<&str> = served.iter().map(|s| s.url.as_str()).collect();
    if urls.is_empty() {
        return String::new();
    }
    format!("extra-substituters = {}\n", urls.join(" "))
}

/// Whether `path` can be named in an `!include` line (one word, no comment).
pub fn includable(path: &Path) -> bool {
    let s = path.to_string_lossy();
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == '#')
}

/// Whether nix.conf `text` includes the file (`!include` or `include`, relative or the
/// absolute path `file`).
pub fn is_included(text: &str, file: &Path) -> bool {
    let Ok(conf) = NixConf::parse(text) else {
        return false;
    };
    conf.includes()
        .iter()
        .any(|i| i.path == FILE_NAME || Path::new(&i.path) == file)
}

/// nix.conf `text` with the line added (unchanged when it includes the file already).
pub fn add_line(text: &str) -> anyhow::Result<String> {
    let mut conf = NixConf::parse(text)?;
    conf.add_include(FILE_NAME)?;
    Ok(conf.to_text())
}

/// nix.conf `text` without the `!include` line `add_line` wrote: the bytes as before it.
pub fn remove_line(text: &str) -> anyhow::Result<String> {
    let mut conf = NixConf::parse(text)?;
    conf.remove_include(FILE_NAME);
    Ok(conf.to_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_lists_urls_and_keys_once_and_says_fallback() {
        let text = render(
            &[
                Served {
                    url: "http://127.0.0.1:21000/s/a".into(),
                    public_keys: vec!["k-1:AA==".into()],
                },
                Served {
                    url: "http://127.0.0.1:21000/s/b~2".into(),
                    public_keys: vec!["k-1:AA==".into(), "k-2:BB==".into()],
                },
            ],
            Urls::Here,
            &[],
        );
        assert!(text.contains(
            "\nextra-substituters = http://127.0.0.1:21000/s/a http://127.0.0.1:21000/s/b~2\n"
        ));
        assert!(text.contains("\nextra-trusted-public-keys = k-1:AA== k-2:BB==\n"));
        assert!(text.contains("\nfallback = true\n"));
        // It is a nix.conf Nix reads: every line parses.
        NixConf::parse(&text).unwrap();
        let served = [Served {
            url: "http://127.0.0.1:21000/s/a".into(),
            public_keys: vec!["k-1:AA==".into()],
        }];
        let rt = Path::new("/run/user/1000/nixstore-auth/nix.conf");
        let text = render(&served, Urls::Runtime(rt), &[]);
        assert!(
            !text.contains("http://") && !text.contains("/s/a"),
            "{text}"
        );
        assert!(text.ends_with("\n!include /run/user/1000/nixstore-auth/nix.conf\n"));
        let conf = NixConf::parse(&text).unwrap();
        assert_eq!(conf.includes()[0].path, rt.to_str().unwrap());
        let rt_text = render_runtime(&served, 42);
        assert_eq!(
            rt_text.lines().last(),
            Some("extra-substituters = http://127.0.0.1:21000/s/a")
        );
        assert!(rt_text.starts_with(&runtime_owner_line(42)));
        assert!(includable(rt) && !includable(Path::new("/run/a b")));
        let empty = render(&[], Urls::Here, &[]);
        assert!(!empty.contains("extra-substituters") && empty.contains("nothing is served"));
        // What the remote-builder decision forwards goes in as settings (none today).
        let b = [super::super::forward::Setting::new(
            "builders-use-substitutes",
            "false",
            false,
        )];
        let text = render(&served, Urls::Here, &b);
        assert!(
            text.contains("\nbuilders-use-substitutes = false\n"),
            "{text}"
        );
        NixConf::parse(&text).unwrap();
    }

    #[test]
    fn the_line_is_added_found_and_removed() {
        let file = Path::new("/h/.config/nix/nixstore-auth.conf");
        assert_eq!(path_for(Path::new("/h/.config/nix/nix.conf")), file);
        let before = "# mine\nsubstituters = https://c.example\n";
        let with = add_line(before).unwrap();
        assert!(with.ends_with("!include nixstore-auth.conf\n"));
        assert!(is_included(&with, file));
        assert!(!is_included(before, file));
        assert_eq!(add_line(&with).unwrap(), with);
        assert_eq!(remove_line(&with).unwrap(), before);
        assert!(is_included(
            "include /h/.config/nix/nixstore-auth.conf\n",
            file
        ));
    }
}
