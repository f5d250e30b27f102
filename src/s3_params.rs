//! The parameters of an `s3://` URL beyond bucket, region, endpoint, scheme and profile: every
//! one Nix's S3 binary cache store knows (its own, the binary cache store's and the store's),
//! with Nix's names, units and checks, so that a URL that works with `nix copy --to s3://...`
//! works with `use` unchanged. A name Nix does not know is refused, naming it.
//!
//! Values are kept as text in their checked, canonical form (`true`/`false`, decimal bytes) so
//! that the URL round-trips through config.toml and the proxy's control channel unchanged; the
//! typed accessors below are what the uploader and the proxy read.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// S3's smallest part (except the last) and largest part; Nix checks the same bounds.
pub const MIN_PART: u64 = 5 * 1024 * 1024;
pub const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;
/// Nix's defaults for the multipart parameters.
pub const DEFAULT_CHUNK: u64 = 5 * 1024 * 1024;
pub const DEFAULT_THRESHOLD: u64 = 100 * 1024 * 1024;
/// S3 takes at most this many parts in one upload.
pub const MAX_PARTS: u64 = 10_000;

/// What kind of value a parameter takes.
#[derive(Clone, Copy)]
enum Kind {
    Bool,
    /// A decimal byte count within bounds.
    Bytes(u64, u64),
    /// A decimal integer within bounds.
    Int(i64, i64),
    OneOf(&'static [&'static str]),
    /// Free text without control characters (paths, storage classes, feature lists).
    Text,
}

/// Every parameter Nix knows for `s3://` stores, other than those `cache::parse_url` reads
/// itself (region, endpoint, scheme, profile). Aliases map to the name Nix documents.
const PARAMS: &[(&str, Kind)] = &[
    // S3BinaryCacheStoreConfig (Nix 2.34 / master)
    (
        "addressing-style",
        Kind::OneOf(&["auto", "path", "virtual"]),
    ),
    ("multipart-upload", Kind::Bool),
    ("multipart-chunk-size", Kind::Bytes(MIN_PART, MAX_PART)),
    ("multipart-threshold", Kind::Bytes(0, u64::MAX)),
    ("storage-class", Kind::Text),
    // BinaryCacheStoreConfig
    ("compression", Kind::OneOf(COMPRESSIONS)),
    ("compression-level", Kind::Int(-1, 22)),
    ("parallel-compression", Kind::Bool),
    ("write-nar-listing", Kind::Bool),
    ("index-debug-info", Kind::Bool),
    ("secret-key", Kind::Text),
    ("secret-keys", Kind::Text),
    ("local-nar-cache", Kind::Text),
    // HttpBinaryCacheStoreConfig
    ("narinfo-compression", Kind::OneOf(COMPRESSIONS)),
    ("ls-compression", Kind::OneOf(COMPRESSIONS)),
    ("log-compression", Kind::OneOf(COMPRESSIONS)),
    ("tls-certificate", Kind::Text),
    ("tls-private-key", Kind::Text),
    // StoreConfig
    ("priority", Kind::Int(i32::MIN as i64, i32::MAX as i64)),
    ("want-mass-query", Kind::Bool),
    ("trusted", Kind::Bool),
    ("path-info-cache-size", Kind::Int(0, i32::MAX as i64)),
    ("system-features", Kind::Text),
    ("store", Kind::Text),
];

/// Nix's older names for the same settings.
const ALIASES: &[(&str, &str)] = &[("buffer-size", "multipart-chunk-size")];

/// The compression methods Nix's binary cache stores name (libarchive's filters).
const COMPRESSIONS: &[&str] = &[
    "none", "xz", "zstd", "bzip2", "gzip", "br", "brotli", "lz4", "lzip", "lzma", "lzop",
    "compress", "grzip", "lrzip",
];

/// How a NAR (or a narinfo, listing, log) is compressed on upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
}

impl Compression {
    /// The name in narinfos, URLs and `Content-Encoding`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }

    /// The NAR file's extension after `.nar`.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
        }
    }
}

/// Addressing of the bucket: `auto` is Nix's default (virtual-hosted on AWS, path style on
/// custom endpoints and for bucket names with dots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    Auto,
    Path,
    Virtual,
}

/// The checked parameters of one S3 cache URL, by Nix's name, in canonical text.
/// Read back (config.toml, the proxy's control channel) through the same checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct S3Params(BTreeMap<String, String>);

impl TryFrom<BTreeMap<String, String>> for S3Params {
    type Error = anyhow::Error;
    fn try_from(m: BTreeMap<String, String>) -> Result<S3Params> {
        S3Params::from_pairs(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

impl From<S3Params> for BTreeMap<String, String> {
    fn from(p: S3Params) -> Self {
        p.0
    }
}

impl S3Params {
    /// Takes parameter `name` (as written in the URL, decoded once) with `value`; errors name
    /// the parameter. A parameter given twice is refused (readers disagree on which counts).
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let canonical = ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, to)| to);
        let Some((key, kind)) = PARAMS.iter().find(|(n, _)| *n == canonical) else {
            bail!(
                "the S3 URL has a parameter Nix does not know: {name:?} (Nix's S3 store takes {})",
                known_names()
            );
        };
        let value = check(key, *kind, value)?;
        if self.0.insert(key.to_string(), value).is_some() {
            bail!("the S3 URL gives the parameter {key:?} more than once");
        }
        self.check_together()
    }

    /// Rebuilds from `(name, value)` pairs (config.toml, the control channel), checking each.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<S3Params> {
        let mut p = S3Params::default();
        for (k, v) in pairs {
            p.set(k, v)?;
        }
        Ok(p)
    }

    /// `(name, value)` in Nix's names, sorted.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str) -> Option<bool> {
        self.get(name).map(|v| v == "true")
    }

    fn number(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(|v| v.parse().ok())
    }

    /// Refuses combinations Nix refuses, and values that are valid for Nix but that we cannot
    /// act on (so that nothing is silently different from what the URL says).
    fn check_together(&self) -> Result<()> {
        for key in [
            "compression",
            "narinfo-compression",
            "ls-compression",
            "log-compression",
        ] {
            if let Some(v) = self.get(key)
                && compression_of(v).is_none()
            {
                bail!(
                    "{key}={v} is valid for Nix, but nixstore-auth uploads with xz, zstd or none only"
                );
            }
        }
        for key in ["index-debug-info", "write-nar-listing"] {
            if self.flag(key) == Some(true) {
                bail!(
                    "{key}=true is not supported by nixstore-auth's uploader; remove it (Nix's default is false)"
                );
            }
        }
        for key in ["tls-certificate", "tls-private-key"] {
            if self.get(key).is_some() {
                bail!(
                    "{key} (a TLS client certificate for the endpoint) is not supported by nixstore-auth's proxy"
                );
            }
        }
        if let Some(sc) = self.get("storage-class")
            && !(sc.len() <= 64
                && !sc.is_empty()
                && sc
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit()))
        {
            bail!(
                "storage-class={sc:?} is not an S3 storage class (e.g. STANDARD, STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR)"
            );
        }
        if let Some(level) = self.get("compression-level") {
            let level: i64 = level.parse().unwrap_or(-1);
            let (ok, range) = match self.compression() {
                Compression::Xz => ((0..=9).contains(&level), ", or 0 to 9"),
                Compression::Zstd => ((1..=22).contains(&level), ", or 1 to 22"),
                Compression::None => (false, ""),
            };
            if level != -1 && !ok {
                bail!(
                    "compression-level={level} is out of range for {}: -1 (the default){range}",
                    self.compression().name()
                );
            }
        }
        if let Some(store) = self.get("store")
            && store.trim_end_matches('/') != crate::push::store_dir()
        {
            bail!(
                "store={store} differs from this machine's store directory {}: its paths cannot be uploaded there",
                crate::push::store_dir()
            );
        }
        Ok(())
    }

    fn compression_given(&self) -> Option<Compression> {
        self.get("compression").and_then(compression_of)
    }

    /// NAR compression: the URL's, else zstd (Nix's default is xz, which is far slower).
    pub fn compression(&self) -> Compression {
        self.compression_given().unwrap_or(Compression::Zstd)
    }

    /// The level for the compressor, `None` for its default.
    pub fn compression_level(&self) -> Option<i32> {
        self.get("compression-level")
            .and_then(|v| v.parse().ok())
            .filter(|l: &i32| *l >= 0)
    }

    pub fn parallel_compression(&self) -> bool {
        self.flag("parallel-compression").unwrap_or(false)
    }

    /// Compression of narinfo, `.ls` and log files (none unless given).
    pub fn narinfo_compression(&self) -> Compression {
        self.get("narinfo-compression")
            .and_then(compression_of)
            .unwrap_or(Compression::None)
    }

    pub fn addressing(&self) -> Addressing {
        match self.get("addressing-style") {
            Some("path") => Addressing::Path,
            Some("virtual") => Addressing::Virtual,
            _ => Addressing::Auto,
        }
    }

    /// Multipart uploads: on unless `multipart-upload=false` (Nix's default is off, but a
    /// single PUT above 5 GiB fails on AWS).
    pub fn multipart(&self) -> bool {
        self.flag("multipart-upload").unwrap_or(true)
    }

    pub fn multipart_chunk_size(&self) -> u64 {
        self.number("multipart-chunk-size").unwrap_or(DEFAULT_CHUNK)
    }

    pub fn multipart_threshold(&self) -> u64 {
        self.number("multipart-threshold")
            .unwrap_or(DEFAULT_THRESHOLD)
    }

    pub fn storage_class(&self) -> Option<&str> {
        self.get("storage-class")
    }

    /// Signing key files named in the URL (`secret-key`, then each of `secret-keys`).
    pub fn secret_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .get("secret-key")
            .map(String::from)
            .into_iter()
            .collect();
        if let Some(list) = self.get("secret-keys") {
            keys.extend(
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
        }
        keys
    }

    pub fn priority(&self) -> Option<i64> {
        self.get("priority").and_then(|v| v.parse().ok())
    }

    pub fn want_mass_query(&self) -> Option<bool> {
        self.flag("want-mass-query")
    }
}

fn compression_of(v: &str) -> Option<Compression> {
    match v {
        "none" => Some(Compression::None),
        "xz" => Some(Compression::Xz),
        "zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

fn known_names() -> String {
    let mut names: Vec<&str> = ["region", "endpoint", "scheme", "profile"].to_vec();
    names.extend(PARAMS.iter().map(|(n, _)| *n));
    names.join(", ")
}

/// Checks `value` for parameter `key` and returns its canonical form.
fn check(key: &str, kind: Kind, value: &str) -> Result<String> {
    if value.chars().any(char::is_control) {
        bail!("the S3 URL parameter {key} holds a control character");
    }
    match kind {
        Kind::Bool => match value {
            "true" | "yes" | "1" => Ok("true".into()),
            "false" | "no" | "0" => Ok("false".into()),
            _ => bail!("the S3 URL parameter {key}={value:?} is not a Boolean (true or false)"),
        },
        Kind::Bytes(min, max) => {
            let n: u64 = value.parse().map_err(|_| {
                anyhow::anyhow!("the S3 URL parameter {key}={value:?} is not a number of bytes")
            })?;
            if n < min || n > max {
                bail!(
                    "{key} must be between {min} and {max} bytes (S3's part size limits), got {n}"
                );
            }
            Ok(n.to_string())
        }
        Kind::Int(min, max) => {
            let n: i64 = value.parse().map_err(|_| {
                anyhow::anyhow!("the S3 URL parameter {key}={value:?} is not an integer")
            })?;
            if n < min || n > max {
                bail!("the S3 URL parameter {key} must be between {min} and {max}, got {n}");
            }
            Ok(n.to_string())
        }
        Kind::OneOf(values) => {
            if values.contains(&value) {
                Ok(value.to_string())
            } else {
                bail!(
                    "the S3 URL parameter {key}={value:?} is not one of {}",
                    values.join(", ")
                )
            }
        }
        Kind::Text => {
            if value.is_empty() {
                bail!("the S3 URL parameter {key} is empty");
            }
            Ok(value.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Result<S3Params> {
        S3Params::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn nix_parameters_are_taken_with_nix_units_and_others_refused_by_name() {
        let p = params(&[
            ("multipart-chunk-size", "5242880"),
            ("multipart-threshold", "5242880"),
            ("compression", "xz"),
            ("compression-level", "6"),
            ("addressing-style", "path"),
            ("storage-class", "STANDARD_IA"),
            ("want-mass-query", "yes"),
            ("priority", "30"),
        ])
        .unwrap();
        assert_eq!(p.multipart_chunk_size(), 5 * 1024 * 1024);
        assert_eq!(p.compression(), Compression::Xz);
        assert_eq!(p.compression_level(), Some(6));
        assert_eq!(p.addressing(), Addressing::Path);
        assert_eq!(p.storage_class(), Some("STANDARD_IA"));
        assert_eq!(p.want_mass_query(), Some(true));
        assert_eq!(p.priority(), Some(30));
        assert!(p.multipart());
        // Defaults: zstd, multipart on, Nix's sizes.
        let d = S3Params::default();
        assert_eq!(d.compression(), Compression::Zstd);
        assert!(d.multipart());
        assert_eq!(d.multipart_threshold(), 100 * 1024 * 1024);
        assert_eq!(d.addressing(), Addressing::Auto);
        // The alias Nix keeps.
        assert_eq!(
            params(&[("buffer-size", "6291456")])
                .unwrap()
                .multipart_chunk_size(),
            6291456
        );
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("bogus", "1")], "does not know: \"bogus\""),
            (&[("multipart-chunk-size", "1024")], "between 5242880"),
            (&[("multipart-chunk-size", "5MiB")], "not a number of bytes"),
            (&[("multipart-upload", "maybe")], "not a Boolean"),
            (&[("compression", "lz5")], "not one of"),
            (&[("compression", "gzip")], "xz, zstd or none only"),
            (
                &[("compression", "zstd"), ("compression-level", "30")],
                "between -1 and 22",
            ),
            (
                &[("compression", "xz"), ("compression-level", "12")],
                "out of range for xz",
            ),
            (&[("addressing-style", "dns")], "not one of"),
            (&[("storage-class", "glacier")], "not an S3 storage class"),
            (&[("write-nar-listing", "true")], "not supported"),
            (&[("tls-certificate", "/c.pem")], "not supported"),
            (&[("store", "/other/store")], "differs from this machine"),
            (&[("priority", "10"), ("priority", "20")], "more than once"),
            (&[("secret-key", "/a\n")], "control character"),
        ];
        for (pairs, needle) in cases {
            let err = params(pairs).unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{pairs:?}: {err:#}");
        }
        assert!(params(&[("write-nar-listing", "false"), ("index-debug-info", "0")]).is_ok());
    }

    #[test]
    fn canonical_values_round_trip() {
        let p = params(&[("parallel-compression", "1"), ("multipart-upload", "no")]).unwrap();
        let pairs: Vec<_> = p.pairs().collect();
        assert_eq!(
            pairs,
            [
                ("multipart-upload", "false"),
                ("parallel-compression", "true")
            ]
        );
        assert_eq!(S3Params::from_pairs(pairs).unwrap(), p);
        assert!(!p.multipart());
        let keys = params(&[("secret-key", "/a"), ("secret-keys", "/b, /c")]).unwrap();
        assert_eq!(keys.secret_keys(), ["/a", "/b", "/c"]);
    }
}
