//! What a cache is: its kind (HTTPS or S3), its name, its keys. Parsing and validation only.

use anyhow::{Context, Result, bail};
use base64::Engine;
use percent_encoding::{AsciiSet, utf8_percent_encode};
use url::Url;

use crate::redact;

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
    /// Every other parameter Nix's S3 store knows (compression, multipart, addressing, ...).
    pub params: crate::s3_params::S3Params,
}

impl S3Ref {
    /// The `s3://` URL Nix would use for this cache. Parameter values are percent-encoded just
    /// enough that [`parse_url`] reads the same values back: `&`, `=`, `%`, `#` and `+` (a raw
    /// `+` would decode as a space). Everything else stays readable
    /// (`endpoint=http://127.0.0.1:5000`).
    pub fn to_url(&self) -> String {
        let mut s = format!("s3://{}", self.bucket);
        if let Some(p) = &self.prefix {
            s.push('/');
            s.push_str(p);
        }
        let mut query = Vec::new();
        for (key, value) in [
            ("region", &self.region),
            ("endpoint", &self.endpoint),
            ("profile", &self.profile),
        ] {
            if let Some(v) = value {
                query.push(format!("{key}={}", utf8_percent_encode(v, QUERY_VALUE)));
            }
        }
        for (key, v) in self.params.pairs() {
            query.push(format!("{key}={}", utf8_percent_encode(v, QUERY_VALUE)));
        }
        if !query.is_empty() {
            s.push('?');
            s.push_str(&query.join("&"));
        }
        s
    }
}

/// The characters that would change how a query value parses.
const QUERY_VALUE: &AsciiSet = &AsciiSet::EMPTY
    .add(b'&')
    .add(b'=')
    .add(b'%')
    .add(b'#')
    .add(b'+');

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheKind {
    Https {
        url: Url,
    },
    S3(S3Ref),
    /// Google Cloud Storage (`gs://`), served through the proxy.
    Gcs(crate::gcp::Bucket),
    /// Azure Blob Storage (`azure://`, or the portal's blob URL), served through the proxy.
    Azure(crate::azure::Container),
}

impl CacheKind {
    pub fn label(&self) -> &'static str {
        match self {
            CacheKind::Https { .. } => "https",
            CacheKind::S3(_) => "s3",
            CacheKind::Gcs(_) => "gcs",
            CacheKind::Azure(_) => "azure",
        }
    }

    /// The URL as the user and Nix write it.
    pub fn url(&self) -> String {
        match self {
            CacheKind::Https { url } => url.as_str().trim_end_matches('/').to_string(),
            CacheKind::S3(s3) => s3.to_url(),
            CacheKind::Gcs(b) => b.to_url(),
            CacheKind::Azure(c) => c.to_url(),
        }
    }

    /// Whether the cache is in a cloud's object store that the proxy alone can read (S3, GCS,
    /// Azure), as opposed to an HTTPS cache.
    pub fn is_object_store(&self) -> bool {
        !matches!(self, CacheKind::Https { .. })
    }

    /// Whether the cache is a GCS or Azure one (the proxy's `object.rs` kinds).
    pub fn is_cloud(&self) -> bool {
        matches!(self, CacheKind::Gcs(_) | CacheKind::Azure(_))
    }

    /// The host a netrc entry must name (curl matches on the host only, never the port); `None`
    /// for S3 caches, which take no netrc.
    pub fn netrc_machine(&self) -> Option<String> {
        match self {
            CacheKind::Https { url } => url
                .host_str()
                .map(|h| h.trim_matches(['[', ']']).to_string()),
            _ => None,
        }
    }

    /// The default name: the host (https) or the bucket (s3), lowercased to `[a-z0-9-]`.
    pub fn default_name(&self) -> String {
        let raw = match self {
            CacheKind::Https { url } => url.host_str().unwrap_or("cache").to_string(),
            CacheKind::S3(s3) => s3.bucket.clone(),
            CacheKind::Gcs(b) => b.bucket.clone(),
            CacheKind::Azure(c) => c.container.clone(),
        };
        sanitize_name(&raw)
    }
}

/// Whether two substituter URLs name the same cache: the one comparison rule (Nix treats
/// `https://c.org` and `https://c.org/` alike).
pub fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
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

/// Checks a netrc login (`--login`, or recorded in config.toml) with netrc's one rule.
pub fn validate_login(login: &str) -> Result<()> {
    if let Some(why) = crate::nix::netrc::word_problem(login, false) {
        bail!("the login {login:?} {why}");
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
    // A URL that does not parse is shown with its login and password hidden.
    let shown = || redact::url(input);
    let url = Url::parse(input).with_context(|| format!("not a valid cache URL: {:?}", shown()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(crate::ui::error_with_help(
            "the URL carries a login or password",
            match url.scheme() {
                "s3" => {
                    "pass the URL without it: S3 credentials come from your AWS session (`nixstore-auth aws add-key`, `nixstore-auth login`)"
                }
                _ => {
                    "pass the URL without it and give the token with --token-stdin (or --token-env VAR), so that it never appears in argv or shell history"
                }
            },
        ));
    }
    match url.scheme() {
        "https" | "http" => {
            if url.host_str().is_none() {
                bail!("the cache URL {:?} has no host", shown());
            }
            if url.query().is_some() || url.fragment().is_some() {
                bail!(
                    "the cache URL {:?} has a query or fragment; Nix HTTP caches take neither",
                    shown()
                );
            }
            // The blob URL people copy from Azure's portal is an Azure cache.
            if url.scheme() == "https"
                && url
                    .host_str()
                    .is_some_and(|h| h.ends_with(".blob.core.windows.net"))
            {
                return crate::azure::Container::parse(input)
                    .map(CacheKind::Azure)
                    .map_err(|e| anyhow::anyhow!("{e}"));
            }
            Ok(CacheKind::Https { url })
        }
        "s3" => parse_s3(&url).map(CacheKind::S3),
        "gs" => crate::gcp::Bucket::parse(input)
            .map(CacheKind::Gcs)
            .map_err(|e| anyhow::anyhow!("{e}")),
        "azure" => crate::azure::Container::parse(input)
            .map(CacheKind::Azure)
            .map_err(|e| anyhow::anyhow!("{e}")),
        other => bail!(
            "unsupported cache URL scheme {other:?}: use https://, http://, s3://, gs:// or azure:// (or the name of a recorded cache)"
        ),
    }
}

/// A cache URL as config.toml records it with its `kind`: a portal blob URL recorded as
/// `https` (before Azure caches existed) keeps its kind.
pub fn parse_recorded(input: &str, kind: Option<&str>) -> Result<CacheKind> {
    if kind == Some("https") && input.starts_with("https://") {
        let url = Url::parse(input).with_context(|| format!("not a valid cache URL: {input:?}"))?;
        if url
            .host_str()
            .is_some_and(|h| h.ends_with(".blob.core.windows.net"))
        {
            return Ok(CacheKind::Https { url });
        }
    }
    parse_url(input)
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
    let mut params = crate::s3_params::S3Params::default();
    // query_pairs percent-decodes each value exactly once; the values are checked decoded.
    for (k, v) in url.query_pairs() {
        let slot = match k.as_ref() {
            "region" => &mut region,
            "endpoint" => &mut endpoint,
            "profile" => &mut profile,
            "scheme" => &mut scheme,
            // Every other parameter Nix knows (and only those): s3_params.rs.
            _ => {
                params.set(&k, &v)?;
                continue;
            }
        };
        // Readers disagree on which of a repeated parameter counts: refuse rather than guess.
        if slot.replace(v.into_owned()).is_some() {
            bail!("the S3 URL gives the parameter {k:?} more than once");
        }
    }
    if let Some(r) = &region {
        validate_region(r)?;
    }
    if let Some(p) = &profile {
        validate_profile(p)?;
    }
    let endpoint = match endpoint {
        None => None,
        Some(e) if e.contains("://") => Some(validate_endpoint(&e)?),
        Some(e) => {
            // Older Nix writes `endpoint=host:port&scheme=http`.
            let scheme = scheme.as_deref().unwrap_or("https");
            if scheme != "http" && scheme != "https" {
                bail!("unsupported S3 scheme {scheme:?}: use http or https");
            }
            Some(validate_endpoint(&format!("{scheme}://{e}"))?)
        }
    };
    if params.addressing() == crate::s3_params::Addressing::Virtual && bucket.contains('.') {
        bail!(
            "addressing-style=virtual needs a bucket name without dots (TLS certificates do not cover them); use path or auto"
        );
    }
    Ok(S3Ref {
        bucket,
        prefix,
        region,
        endpoint,
        profile,
        params,
    })
}

/// Checks an S3 region: `[a-z0-9-]+`. The proxy builds the AWS host name
/// `s3.REGION.amazonaws.com` from it, so anything else could point signed requests elsewhere.
pub fn validate_region(region: &str) -> Result<()> {
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        bail!(
            "invalid S3 region {region:?}: a region is made of a-z, 0-9 and '-' (e.g. eu-west-1)"
        );
    }
    Ok(())
}

/// Checks an AWS profile name with the rule of aws-config, which reads the profiles: ASCII
/// letters, digits and `_-/.%@:+` (a profile named otherwise cannot be loaded at all).
pub fn validate_profile(profile: &str) -> Result<()> {
    if profile.is_empty()
        || !profile
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-/.%@:+".contains(c))
    {
        bail!(
            "invalid AWS profile name {profile:?}: use letters, digits and the characters _-/.%@:+"
        );
    }
    Ok(())
}

/// Checks an S3 endpoint and returns it normalised (no trailing slash): an http(s) URL with a
/// host and neither login, query nor fragment. The normalised form is what the proxy uses, so
/// what was checked is what is reached.
pub fn validate_endpoint(endpoint: &str) -> Result<String> {
    // Before parsing: the URL parser silently drops tabs and newlines.
    reject_unsafe_chars(endpoint, "S3 endpoint")?;
    let shown = redact::url(endpoint);
    let url = Url::parse(endpoint)
        .with_context(|| format!("the S3 endpoint {shown:?} is not a valid URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        bail!(
            "the S3 endpoint {shown:?} carries a login or password; credentials come from your AWS session"
        );
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        bail!("the S3 endpoint {shown:?} must be an http:// or https:// URL");
    }
    if url.host_str().is_none_or(str::is_empty) {
        bail!("the S3 endpoint {shown:?} has no host");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("the S3 endpoint {shown:?} has a query or fragment; give the endpoint's base URL");
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// Validates a Nix public key `name:base64` (an ed25519 key, 32 bytes once decoded).
pub fn validate_public_key(key: &str) -> Result<()> {
    reject_unsafe_chars(key, "public key")?;
    // A rejected key may be the secret key pasted in its place: never shown.
    let shown = || redact::secret("public key", key);
    let (name, b64) = key
        .split_once(':')
        .with_context(|| format!("{} is not of the form NAME:BASE64", shown()))?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!("{} needs a name before ':' without spaces", shown());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| anyhow::anyhow!("{}: the part after ':' is not valid base64", shown()))?;
    if bytes.len() != 32 {
        bail!(
            "{} decodes to {} bytes; an ed25519 public key has 32 (did you pass the secret key?)",
            shown(),
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

    #[test]
    fn netrc_machine_is_the_host_without_port() {
        let k = parse_url("https://127.0.0.1:8443/x").unwrap();
        assert_eq!(k.netrc_machine().as_deref(), Some("127.0.0.1"));
        let k = parse_url("http://[::1]:80").unwrap();
        assert_eq!(k.netrc_machine().as_deref(), Some("::1"));
    }

    const KEY: &str = "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

    #[test]
    fn https_names_come_from_the_host() {
        let k = parse_url("https://Cache.Example.org/sub/").unwrap();
        assert_eq!(k.default_name(), "cache-example-org");
        assert_eq!(k.url(), "https://cache.example.org/sub");
    }

    #[test]
    fn cloud_urls_and_the_portal_form() {
        let g = parse_url("gs://nix-cache/pre?endpoint=http://127.0.0.1:4443").unwrap();
        assert_eq!(g.label(), "gcs");
        assert_eq!(g.url(), "gs://nix-cache/pre?endpoint=http://127.0.0.1:4443");
        assert_eq!(g.default_name(), "nix-cache");
        let a = parse_url("https://acct1.blob.core.windows.net/cache/sub").unwrap();
        assert_eq!(a.label(), "azure");
        assert_eq!(a.url(), "azure://acct1/cache/sub");
        assert_eq!(a.default_name(), "cache");
        assert!(a.is_cloud() && a.is_object_store() && a.netrc_machine().is_none());
        // Recorded as https before: stays https.
        let kept =
            parse_recorded("https://acct1.blob.core.windows.net/cache", Some("https")).unwrap();
        assert_eq!(kept.label(), "https");
        let new = parse_recorded("azure://acct1/cache", Some("azure")).unwrap();
        assert_eq!(new.label(), "azure");
        assert!(parse_url("azure://acct1/cache?sas=x").is_err());
        assert!(parse_url("gs://UP").is_err());
    }

    #[test]
    fn credentials_in_url_are_refused() {
        let err = parse_url("https://u:p@cache.example.org").unwrap_err();
        assert!(format!("{err}").contains("login or password"));
        assert!(crate::ui::help_of(&err).unwrap().contains("--token-stdin"));
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

    fn s3(url: &str) -> Result<S3Ref> {
        match parse_url(url)? {
            CacheKind::S3(s3) => Ok(s3),
            other => panic!("not s3: {other:?}"),
        }
    }

    /// region, endpoint, profile; or a piece of the error.
    type Expected = Result<
        (
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        ),
        &'static str,
    >;

    #[test]
    fn s3_parameters_are_decoded_once_then_validated() {
        // The proof case: a region that decodes to `...&endpoint=...` must not gain an endpoint.
        let err = s3("s3://b?region=eu-west-1%26endpoint%3Dhttps%3A%2F%2Fother.host").unwrap_err();
        assert!(format!("{err:#}").contains("invalid S3 region"), "{err:#}");
        let cases: &[(&str, Expected)] = &[
            ("s3://b", Ok((None, None, None))),
            (
                "s3://b?region=eu-west-1",
                Ok((Some("eu-west-1"), None, None)),
            ),
            ("s3://b?region=EU-west-1", Err("invalid S3 region")),
            ("s3://b?region=", Err("invalid S3 region")),
            ("s3://b?region=a.b", Err("invalid S3 region")),
            ("s3://b?region=a%2Fb", Err("invalid S3 region")),
            ("s3://b?region=a+b", Err("invalid S3 region")),
            ("s3://b?region=a&region=b", Err("more than once")),
            ("s3://b?profile=work", Ok((None, None, Some("work")))),
            // A raw `+` decodes to a space.
            ("s3://b?profile=a.b@c+d", Err("invalid AWS profile")),
            (
                "s3://b?profile=a.b@c:d/e%25",
                Ok((None, None, Some("a.b@c:d/e%"))),
            ),
            ("s3://b?profile=a%2Bb", Ok((None, None, Some("a+b")))),
            ("s3://b?profile=", Err("invalid AWS profile")),
            ("s3://b?profile=a%0Ab", Err("invalid AWS profile")),
            ("s3://b?profile=a%23b", Err("invalid AWS profile")),
            ("s3://b?profile=a%26b%3Dc", Err("invalid AWS profile")),
            (
                "s3://b?endpoint=http://127.0.0.1:5000/",
                Ok((None, Some("http://127.0.0.1:5000"), None)),
            ),
            (
                "s3://b?endpoint=http%3A%2F%2FMinio.Local%3A9000",
                Ok((None, Some("http://minio.local:9000"), None)),
            ),
            (
                "s3://b?endpoint=minio.local:9000&scheme=http",
                Ok((None, Some("http://minio.local:9000"), None)),
            ),
            ("s3://b?endpoint=ftp://h", Err("http:// or https://")),
            ("s3://b?endpoint=h&scheme=ftp", Err("unsupported S3 scheme")),
            ("s3://b?endpoint=http://u:p@h", Err("login or password")),
            ("s3://b?endpoint=u@h", Err("login or password")),
            ("s3://b?endpoint=http://h/%3Fx=1", Err("query or fragment")),
            ("s3://b?endpoint=http://h/%23x", Err("'#'")),
            ("s3://b?endpoint=http://h%0A.evil", Err("a newline")),
            ("s3://b?endpoint=http://", Err("S3 endpoint")),
            ("s3://b?endpoint=", Err("S3 endpoint")),
        ];
        for (url, want) in cases {
            let got = s3(url);
            match (want, &got) {
                (Ok((r, e, p)), Ok(got)) => {
                    assert_eq!(
                        (
                            got.region.as_deref(),
                            got.endpoint.as_deref(),
                            got.profile.as_deref()
                        ),
                        (*r, *e, *p),
                        "{url}"
                    );
                }
                (Err(needle), Err(e)) => {
                    assert!(format!("{e:#}").contains(needle), "{url}: {e:#}");
                }
                _ => panic!("{url}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn s3_urls_are_re_encoded_only_where_the_query_would_change() {
        let r = S3Ref {
            bucket: "b".into(),
            prefix: Some("p/q".into()),
            region: Some("eu-west-1".into()),
            endpoint: Some("http://127.0.0.1:5000/x&y=z+w%41".into()),
            profile: Some("me+you@work".into()),
            params: Default::default(),
        };
        let url = r.to_url();
        assert_eq!(
            url,
            "s3://b/p/q?region=eu-west-1&endpoint=http://127.0.0.1:5000/x%26y%3Dz%2Bw%2541&profile=me%2Byou@work"
        );
        assert_eq!(s3(&url).unwrap(), r);
    }

    #[test]
    fn nix_s3_parameters_round_trip_and_unknown_ones_are_refused() {
        let url = "s3://b?region=garage&endpoint=http://127.0.0.1:9000&addressing-style=path&compression=xz&multipart-chunk-size=5242880&multipart-threshold=5242880&storage-class=STANDARD_IA";
        let r = s3(url).unwrap();
        assert_eq!(r.region.as_deref(), Some("garage"));
        assert_eq!(r.params.multipart_threshold(), 5242880);
        assert_eq!(s3(&r.to_url()).unwrap(), r);
        let err = s3("s3://b?region=eu-west-1&compresion=zstd").unwrap_err();
        assert!(format!("{err:#}").contains("\"compresion\""), "{err:#}");
        let err = s3("s3://my.bucket?addressing-style=virtual").unwrap_err();
        assert!(format!("{err:#}").contains("without dots"), "{err:#}");
    }

    proptest::proptest! {
        #[test]
        fn s3_urls_round_trip(
            bucket in "[A-Za-z0-9][A-Za-z0-9_.-]{0,20}",
            // No `.` or `..` segments: the URL parser resolves those in the path.
            prefix in proptest::option::of("[A-Za-z0-9_-][A-Za-z0-9_.-]{0,7}(/[A-Za-z0-9_-][A-Za-z0-9_.-]{0,7}){0,2}"),
            region in proptest::option::of("[a-z0-9-]{1,16}"),
            endpoint in proptest::option::of(
                "https?://[a-z0-9.-]{1,12}[a-z0-9](:[0-9]{1,4})?(/[A-Za-z0-9&=+%._~-]{0,10}){0,2}"
            ),
            profile in proptest::option::of("[A-Za-z0-9_/.%@:+-]{1,16}"),
        ) {
            // Generated endpoints are stored in their normalised form, as parse_s3 would.
            let endpoint = match endpoint {
                Some(e) => match validate_endpoint(&e) {
                    Ok(e) => Some(e),
                    Err(_) => return Ok(()),
                },
                None => None,
            };
            let r = S3Ref { bucket, prefix, region, endpoint, profile, params: Default::default() };
            let url = r.to_url();
            let again = s3(&url).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{url}: {e:#}")))?;
            proptest::prop_assert_eq!(&again, &r, "{}", url);
            proptest::prop_assert_eq!(again.to_url(), url);
        }
    }

    #[test]
    fn secret_shaped_values_are_refused_without_a_character_of_them() {
        const SECRET_KEY: &str = "c-1:BwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QEFCQ0RFRg==";
        let b64 = &SECRET_KEY[4..];
        let cases: Vec<(Result<()>, &str, &str)> = vec![
            (
                validate_public_key(SECRET_KEY),
                "did you pass the secret key?",
                b64,
            ),
            (
                validate_public_key("SECRETTOKEN"),
                "NAME:BASE64",
                "SECRETTOKEN",
            ),
            (validate_public_key(":SECRET"), "needs a name", "SECRET"),
            (
                validate_public_key("k:SECRET!x"),
                "not valid base64",
                "SECRET",
            ),
            (
                parse_url("https://ci:PASSWORD@cache.example.org:99999").map(drop),
                "invalid",
                "PASSWORD",
            ),
            (
                parse_url("https://ci:PASSWORD@cache.example.org").map(drop),
                "login or password",
                "PASSWORD",
            ),
            (
                parse_url("s3://KEYID:PASSWORD@bucket").map(drop),
                "login or password",
                "PASSWORD",
            ),
            (
                parse_url("s3://PASSWORD@bucket").map(drop),
                "login or password",
                "PASSWORD",
            ),
            (
                validate_endpoint("http://ci:PASSWORD@h").map(drop),
                "login or password",
                "PASSWORD",
            ),
            (
                validate_endpoint("http://ci:PASSWORD@h:99999").map(drop),
                "not a valid URL",
                "PASSWORD",
            ),
            (
                validate_endpoint("ftp://ci:PASSWORD@h").map(drop),
                "login or password",
                "PASSWORD",
            ),
            (
                validate_endpoint("http://ci:PA/SS@h:99999").map(drop),
                "not a valid URL",
                "PA/SS",
            ),
        ];
        for (got, needle, secret) in cases {
            let err = format!("{:#}", got.unwrap_err());
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains(secret), "{secret} in {err}");
            assert!(!err.contains("ci:"), "{err}");
        }
        // Names that are not secrets stay visible.
        let err = format!(
            "{:#}",
            parse_url("s3://b?region=EU&profile=me@work").unwrap_err()
        );
        assert!(err.contains("\"EU\""), "{err}");
        let err = format!("{:#}", validate_profile("me work").unwrap_err());
        assert!(err.contains("\"me work\""), "{err}");
    }

    #[test]
    fn injection_characters_are_refused_in_urls() {
        assert!(parse_url("https://a.org/#x").is_err());
        assert!(parse_url("https://a.org/\nextra-substituters = x").is_err());
        assert!(parse_url("ftp://a.org").is_err());
    }
}
