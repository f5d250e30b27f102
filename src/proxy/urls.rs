//! The one definition of the proxy's URLs, `http://127.0.0.1:PORT/SECRET/NAME`, and of their
//! generations.
//!
//! A cache whose requests were answered "missing" while only a person could renew its
//! credential gets a new generation once it works again: its URL becomes `.../NAME~N`. The
//! nix-daemon keys its narinfo cache (misses remembered for `narinfo-cache-negative-ttl`, an
//! hour) by the cache's URL, so a new URL starts with nothing remembered, while every other
//! cache keeps its narinfo cache. The proxy serves every generation of a name (commands
//! started with an older URL keep working). Generations are kept in
//! `$XDG_STATE_HOME/nixstore-auth/proxy-url-generations.json`; names never contain `~`.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What separates a cache's name from its generation in a URL.
const GEN_MARK: char = '~';

/// The URL Nix gets for cache `name` at generation `generation`.
pub fn url(port: u16, secret: &str, name: &str, generation: u32) -> String {
    format!(
        "http://127.0.0.1:{port}/{secret}/{}",
        mount_segment(name, generation)
    )
}

/// The path segment naming a mount: `NAME`, or `NAME~N` from generation 1 on.
pub fn mount_segment(name: &str, generation: u32) -> String {
    match generation {
        0 => name.to_string(),
        n => format!("{name}{GEN_MARK}{n}"),
    }
}

/// The cache name a path segment names (`NAME` or `NAME~N`); `None` when `~` is followed by
/// anything but a number.
pub fn parse_mount_segment(seg: &str) -> Option<&str> {
    match seg.split_once(GEN_MARK) {
        None => Some(seg),
        Some((name, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => Some(name),
        Some(_) => None,
    }
}

/// The generations file (its path is [`file`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generations(pub BTreeMap<String, u32>);

impl Generations {
    pub fn of(&self, name: &str) -> u32 {
        self.0.get(name).copied().unwrap_or(0)
    }
}

/// Where the generations are kept.
pub fn file(state_dir: &Path) -> PathBuf {
    state_dir.join("proxy-url-generations.json")
}

/// Reads the generations; a missing file is all zero. An unreadable file is an error naming it.
pub fn load(path: &Path) -> Result<Generations> {
    let Some(text) = crate::fs::read_optional(path)? else {
        return Ok(Generations::default());
    };
    let map: BTreeMap<String, u32> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a map of cache names to numbers; remove it (the URLs start again at generation 0)",
            path.display()
        )
    })?;
    Ok(Generations(map))
}

/// Moves `name` to its next generation (under the file's lock) and returns it.
pub fn bump(path: &Path, name: &str) -> Result<u32> {
    if let Some(dir) = path.parent() {
        crate::fs::private_dir(dir)?;
    }
    let _lock = crate::fs::lock(path)?;
    let mut g = load(path)?;
    let next = g.of(name).saturating_add(1);
    g.0.insert(name.to_string(), next);
    let text = serde_json::to_string_pretty(&g.0).context("encoding the URL generations")?;
    crate::fs::atomic_write(path, format!("{text}\n").as_bytes(), 0o600)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_generation_from_one_on_and_parse_back() {
        assert_eq!(url(21000, "s", "c", 0), "http://127.0.0.1:21000/s/c");
        assert_eq!(url(21000, "s", "c", 3), "http://127.0.0.1:21000/s/c~3");
        let table = [
            ("c", Some("c")),
            ("c~3", Some("c")),
            ("my-cache~12", Some("my-cache")),
            ("c~", None),
            ("c~x", None),
            ("c~1~2", None),
        ];
        for (seg, want) in table {
            assert_eq!(parse_mount_segment(seg), want, "{seg}");
        }
    }

    #[test]
    fn generations_start_at_zero_and_bump_one_name() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(&dir.path().join("state"));
        assert_eq!(load(&f).unwrap().of("a"), 0);
        assert_eq!(bump(&f, "a").unwrap(), 1);
        assert_eq!(bump(&f, "a").unwrap(), 2);
        let g = load(&f).unwrap();
        assert_eq!((g.of("a"), g.of("b")), (2, 0));
        std::fs::write(&f, "not json").unwrap();
        assert!(format!("{:#}", load(&f).unwrap_err()).contains("proxy-url-generations"));
    }
}
