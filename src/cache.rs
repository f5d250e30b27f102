//! What a cache is: its kind (HTTPS or S3), its name, its keys. Parsing and validation only.

use anyhow::{Context, Result, bail};
use base64::Engine;
use url::Url;

/// An S3 cache in Nix's own URL form: `s3://bucket[/prefix]?region=R&endpoint=E&profile=P`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Ref {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing slashes.
    pub prefix: Option<String>,
    pub region: Option<String>,
    /// The endpoint as a full URL (`http://127.0.0.1:5000`), normalised from `endpoint` + `scheme`.
    pub endpoint: Option<String>,
    pub profile: Option<String>,
}

impl S3Ref {
    /// The `s3://` URL Nix would use for this cache.
    pub fn to_url(&self) -> String {
        let mut s = format!("s3://{}", self.bucket);
        if let Some(p) = &self.prefix {
            s.push('/');
            s.push_str(p);
        }
        let mut query = Vec::new();
        if let Some(r) = &self.region {
            query.push(format!("region={r}"));
        }
        if let Some(e) = &self.endpoint {
            query.push(format!("endpoint={e}"));
        }
        if let Some(p) = &self.profile {
            query.push(format!("profile={p}"));
        }
        if !query.is_empty() {
            s.push('?');
            s.push_str(&query.join("&"));
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheKind {
    Https { url: Url },
    S3(S3Ref),
}

impl CacheKind {
    pub fn label(&self) -> &'static str {
        match self {
            CacheKind::Https { .. } => "https",
            CacheKind::S3(_) => "s3",
        }
    }

    /// The URL as the user and Nix write it.
    pub fn url(&self) -> String {
        match self {
            CacheKind::Https { url } => url.as_str().trim_end_matches('/').to_string(),
            CacheKind::S3(s3) => s3.to_url(),
        }
    }

    /// The default name: the host (https) or the bucket (s3), lowercased to `[a-z0-9-]`.
    pub fn default_name(&self) -> String {
        let raw = match self {
            CacheKind::Https { url } => url.host_str().unwrap_or("cache").to_string(),
            CacheKind::S3(s3) => s3.bucket.clone(),
        };
        sanitize_name(&raw)
    }
}

/// Lowercases and maps every character outside `[a-z0-9-]` to `-`.
pub fn sanitize_name(raw: &str) -> String {
    let s: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "cache".to_string() } else { s }
}

/// Checks a name given with `--name`.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.starts_with('-')
    {
        bail!(
            "invalid cache name {name:?}: use 1 to 63 characters from a-z, 0-9 and '-', not starting with '-'"
        );
    }
    Ok(())
}

/// Does `s` look like a URL rather than a recorded cache's name?
pub fn looks_like_url(s: &str) -> bool {
    s.contains("://")
}

/// Parses a cache URL given on the command line. Refuses credentials in the URL.
pub fn parse_url(input: &str) -> Result<CacheKind> {
    reject_unsafe_chars(input, "cache URL")?;
    let url = Url::parse(input).with_context(|| format!("not a valid cache URL: {input:?}"))?;
    match url.scheme() {
        "https" | "http" => {
            if !url.username().is_empty() || url.password().is_some() {
                bail!(
                    "the URL carries a login or password; pass the URL without it and give the token with --token-stdin (or --token-env VAR), so that it never appears in argv or shell history"
                );
            }
            if url.host_str().is_none() {
                bail!("the cache URL {input:?} has no host");
            }
            if url.query().is_some() || url.fragment().is_some() {
                bail!(
                    "the cache URL {input:?} has a query or fragment; Nix HTTP caches take neither"
                );
            }
            Ok(CacheKind::Https { url })
        }
        "s3" => parse_s3(&url).map(CacheKind::S3),
        other => bail!(
            "unsupported cache URL scheme {other:?}: use https://, http:// or s3:// (or the name of a recorded cache)"
        ),
    }
}

fn parse_s3(url: &Url) -> Result<S3Ref> {
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .context("an s3:// URL needs a bucket: s3://BUCKET[/PREFIX]?region=...")?
        .to_string();
    let prefix = url.path().trim_matches('/');
    let prefix = (!prefix.is_empty()).then(|| prefix.to_string());
    let (mut region, mut endpoint, mut profile, mut scheme) = (None, None, None, None);
    for (k, v) in url.query_pairs() {
        let v = v.to_string();
        match k.as_ref() {
            "region" => region = Some(v),
            "endpoint" => endpoint = Some(v),
            "profile" => profile = Some(v),
            "scheme" => scheme = Some(v),
            // Nix knows more parameters (compression, parallel-compression, ...): they do not
            // change how we reach the bucket.
            _ => {}
        }
    }
    let endpoint = match endpoint {
        None => None,
        Some(e) if e.contains("://") => Some(e.trim_end_matches('/').to_string()),
        Some(e) => {
            // Older Nix writes `endpoint=host:port&scheme=http`.
            let scheme = scheme.as_deref().unwrap_or("https");
            if scheme != "http" && scheme != "https" {
                bail!("unsupported S3 scheme {scheme:?}: use http or https");
            }
            Some(format!("{scheme}://{}", e.trim_end_matches('/')))
        }
    };
    if let Some(e) = &endpoint {
        Url::parse(e).with_context(|| format!("the S3 endpoint {e:?} is not a valid URL"))?;
    }
    Ok(S3Ref {
        bucket,
        prefix,
        region,
        endpoint,
        profile,
    })
}

/// Validates a Nix public key `name:base64` (an ed25519 key, 32 bytes once decoded).
pub fn validate_public_key(key: &str) -> Result<()> {
    reject_unsafe_chars(key, "public key")?;
    let (name, b64) = key
        .split_once(':')
        .with_context(|| format!("public key {key:?} is not of the form NAME:BASE64"))?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("public key {key:?} needs a name before ':' without spaces");
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .with_context(|| format!("public key {key:?}: the part after ':' is not valid base64"))?;
    if bytes.len() != 32 {
        bail!(
            "public key {key:?} decodes to {} bytes; an ed25519 public key has 32 (did you pass the secret key?)",
            bytes.len()
        );
    }
    Ok(())
}

/// Refuses whitespace that would split a value, `#` that would start a comment, and control
/// characters: each could inject a setting into nix.conf or an entry into netrc.
pub fn reject_unsafe_chars(value: &str, what: &str) -> Result<()> {
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || *c == '#')
    {
        bail!(
            "the {what} contains {}, which could inject settings into nix.conf or netrc; refusing it",
            describe_char(c)
        );
    }
    Ok(())
}

pub fn describe_char(c: char) -> String {
    match c {
        '\n' => "a newline".into(),
        '\r' => "a carriage return".into(),
        '\t' => "a tab".into(),
        ' ' => "a space".into(),
        '#' => "'#'".into(),
        c => format!("the character U+{:04X}", c as u32),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

    #[test]
    fn https_names_come_from_the_host() {
        let k = parse_url("https://Cache.Example.org/sub/").unwrap();
        assert_eq!(k.default_name(), "cache-example-org");
        assert_eq!(k.url(), "https://cache.example.org/sub");
    }

    #[test]
    fn credentials_in_url_are_refused() {
        let err = parse_url("https://u:p@cache.example.org").unwrap_err();
        assert!(format!("{err}").contains("--token-stdin"));
    }

    #[test]
    fn s3_urls_parse_old_and_new_endpoint_forms() {
        let CacheKind::S3(s3) =
            parse_url("s3://My_Bucket/pre/fix?region=eu-west-1&endpoint=127.0.0.1:9000&scheme=http&profile=work")
                .unwrap()
        else {
            panic!("not s3")
        };
        assert_eq!(s3.bucket, "My_Bucket");
        assert_eq!(s3.prefix.as_deref(), Some("pre/fix"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.profile.as_deref(), Some("work"));
        assert_eq!(CacheKind::S3(s3.clone()).default_name(), "my-bucket");
        let CacheKind::S3(again) = parse_url("s3://b?endpoint=https://s3.example.org").unwrap()
        else {
            panic!()
        };
        assert_eq!(again.endpoint.as_deref(), Some("https://s3.example.org"));
    }

    #[test]
    fn public_keys_are_validated() {
        validate_public_key(KEY).unwrap();
        assert!(validate_public_key("nocolon").is_err());
        assert!(validate_public_key("k:notbase64!").is_err());
        assert!(validate_public_key("k:AAAA").is_err());
        let injected = format!("{KEY}\nsubstituters = http://evil");
        assert!(format!("{:#}", validate_public_key(&injected).unwrap_err()).contains("newline"));
    }

    #[test]
    fn injection_characters_are_refused_in_urls() {
        assert!(parse_url("https://a.org/#x").is_err());
        assert!(parse_url("https://a.org/\nextra-substituters = x").is_err());
        assert!(parse_url("ftp://a.org").is_err());
    }
}
