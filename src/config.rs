//! Our own `config.toml` and the XDG directories we use.
//!
//! The file is edited with `toml_edit`, so the user's comments and layout survive our changes.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, TableLike, Value, value};

use crate::cache::{self, CacheKind};
use crate::nix::https_route::{Auth, RouteChoice};

/// The directories nixstore-auth uses, following XDG on Linux.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub config: PathBuf,
    pub cache: PathBuf,
    pub data: PathBuf,
    /// `$XDG_STATE_HOME/nixstore-auth` (`~/.local/state/nixstore-auth`): what the tool
    /// remembers between runs and must keep, like the proxy's port.
    pub state: PathBuf,
    /// `$XDG_RUNTIME_DIR/nixstore-auth` when the session has one.
    pub runtime: Option<PathBuf>,
}

impl Dirs {
    pub fn new() -> Result<Dirs> {
        let p = directories::ProjectDirs::from("", "", "nixstore-auth")
            .context("cannot find the home directory (is HOME set?)")?;
        Ok(Dirs {
            config: p.config_dir().to_path_buf(),
            cache: p.cache_dir().to_path_buf(),
            data: p.data_dir().to_path_buf(),
            state: p.state_dir().unwrap_or_else(|| p.data_dir()).to_path_buf(),
            runtime: p.runtime_dir().map(Path::to_path_buf),
        })
    }

    pub fn config_file(&self) -> PathBuf {
        self.config.join("config.toml")
    }
}

/// Where a cache's token is kept (`use --secret-store`, recorded in config.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum SecretStore {
    /// A netrc file that Nix reads directly: plain `nix build` works
    #[default]
    Netrc,
    /// The OS keyring: only `nixstore-auth exec` (and the shell wrappers) reach the cache
    Keyring,
}

impl SecretStore {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretStore::Netrc => "netrc",
            SecretStore::Keyring => "keyring",
        }
    }
}

/// A cache as recorded in config.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub name: String,
    pub kind: CacheKind,
    pub public_keys: Vec<String>,
    pub login: String,
    pub secret_store: SecretStore,
    /// The nix.conf `use` edited, if any.
    pub nix_conf: Option<PathBuf>,
    /// The netrc file holding the credential, if any.
    pub netrc: Option<PathBuf>,
    /// Whether a token was stored for it (public caches need none).
    pub has_token: bool,
    /// `use` added the `netrc-file` line to nix.conf for this cache (so `remove` may take it out).
    pub added_netrc_line: bool,
    /// How an HTTPS cache's credential reaches it (defaults for S3 caches).
    pub https: HttpsSettings,
}

/// An HTTPS cache's route, auth scheme, token command and CA bundle (`use --route`, `--auth`,
/// `--token-command`, `--ca-file`; `token-ttl` by hand). Defaults are not written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpsSettings {
    pub route: RouteChoice,
    pub auth: Auth,
    /// The command line that prints the token (checked by `token_command::split`).
    pub token_command: Option<String>,
    /// A CA bundle that verifies the cache, besides the system's and Nix's.
    pub ca_file: Option<PathBuf>,
    /// Seconds a command's token is used before the command runs again.
    pub token_ttl: Option<u64>,
}

impl HttpsSettings {
    /// `token-ttl`, or its default.
    pub fn ttl(&self) -> u64 {
        self.token_ttl.unwrap_or(crate::token_command::DEFAULT_TTL)
    }

    /// Whether anything differs from the defaults (an S3 cache may have none of it).
    pub fn is_default(&self) -> bool {
        *self == HttpsSettings::default()
    }
}

impl CacheEntry {
    /// The route an HTTPS cache takes and why (`None` for other kinds), from what is recorded
    /// and whether the background service is installed: what `use` decided, for `list` and
    /// `doctor` to tell.
    pub fn https_route(
        &self,
        service: bool,
    ) -> Option<(crate::nix::https_route::Route, crate::nix::https_route::Why)> {
        use crate::nix::https_route::{RouteFacts, route};
        if !matches!(self.kind, CacheKind::Https { .. }) {
            return None;
        }
        let command = self.https.token_command.is_some();
        Some(route(RouteFacts {
            asked: self.https.route,
            auth: self.https.auth,
            command,
            keyring: self.secret_store == SecretStore::Keyring,
            token: command || self.has_token,
            service,
        }))
    }
}

impl CacheEntry {
    /// Whether the loopback proxy serves the cache to the nix-daemon: every S3 cache, and an
    /// HTTPS cache on the proxy route (`service`: the background service is installed).
    pub fn served_by_proxy(&self, service: bool) -> bool {
        match self.https_route(service) {
            None => true,
            Some((route, _)) => route == crate::nix::https_route::Route::Proxy,
        }
    }
}

/// Checks a `ca-file` value (the command line's and config.toml's rule): an absolute path that
/// can go into nix.conf and messages as it is.
pub fn check_ca_file(path: &Path) -> Result<()> {
    let text = path
        .to_str()
        .context("the CA file's path is not valid UTF-8")?;
    if !path.is_absolute() {
        bail!("the CA file must be given as an absolute path, not {text:?}");
    }
    cache::reject_unsafe_chars(text, "CA file path")
}

/// config.toml, parsed but kept as a document so that comments survive.
#[derive(Debug, Clone, Default)]
pub struct Config {
    doc: DocumentMut,
}

impl Config {
    /// The error for a cache name that is not recorded, listing the ones that are.
    pub fn unknown_cache(&self, arg: &str) -> anyhow::Error {
        let known: Vec<String> = self
            .caches()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.name)
            .collect();
        if known.is_empty() {
            crate::ui::error_with_help(
                format!("unknown cache {arg:?}: no cache is recorded yet"),
                "pass its URL (https://... or s3://...)",
            )
        } else {
            crate::ui::error_with_help(
                format!("unknown cache {arg:?}"),
                format!("recorded caches: {} (or pass a URL)", known.join(", ")),
            )
        }
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let doc: DocumentMut = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        let cfg = Config { doc };
        // Validate every cache now so that commands fail early, naming the file and the key.
        for c in cfg.caches().map_err(|e| at_place(path.display(), e))? {
            cfg.signing_key(&c.name)
                .map_err(|e| at_place(path.display(), e))?;
        }
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<Config> {
        match crate::fs::read_optional(path)? {
            Some(text) => Config::parse(&text, path),
            None => Ok(Config::default()),
        }
    }

    pub fn to_text(&self) -> String {
        self.doc.to_string()
    }

    /// A top-level string setting such as `keyring-backend`.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.doc.get(key).and_then(Item::as_str)
    }

    pub fn get_int(&self, table: Option<&str>, key: &str) -> Option<i64> {
        let item = match table {
            Some(t) => self.doc.get(t)?.get(key)?,
            None => self.doc.get(key)?,
        };
        item.as_integer()
    }

    /// A top-level `key = true|false` (such as `mfa-base-session`); anything else there is an
    /// error that names the key.
    pub fn get_top_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.doc.get(key) {
            None => Ok(None),
            Some(item) => item
                .as_bool()
                .map(Some)
                .with_context(|| format!("{key} must be true or false")),
        }
    }

    /// `[table] key = true|false`; anything else there is an error that names the key.
    pub fn get_bool(&self, table: &str, key: &str) -> Result<Option<bool>> {
        match self.doc.get(table).and_then(|t| t.get(key)) {
            None => Ok(None),
            Some(item) => item
                .as_bool()
                .map(Some)
                .with_context(|| format!("[{table}] {key} must be true or false")),
        }
    }

    /// The recorded caches, each checked with the rules the command line uses (config.toml can
    /// be edited by hand, and its values reach nix.conf, netrc and `NIX_CONFIG`). An error names
    /// the key: `caches.NAME.public-keys: ...`.
    pub fn caches(&self) -> Result<Vec<CacheEntry>> {
        let Some(item) = self.doc.get("caches") else {
            return Ok(Vec::new());
        };
        let table = item
            .as_table_like()
            .context("caches: must be a table of [caches.NAME] sections")?;
        table
            .iter()
            .map(|(name, item)| read_cache(name, item))
            .collect()
    }

    pub fn cache(&self, name: &str) -> Result<Option<CacheEntry>> {
        Ok(self.caches()?.into_iter().find(|c| c.name == name))
    }

    /// Finds a recorded cache by name or by URL.
    pub fn find(&self, name_or_url: &str) -> Result<Option<CacheEntry>> {
        let caches = self.caches()?;
        if let Some(c) = caches.iter().find(|c| c.name == name_or_url) {
            return Ok(Some(c.clone()));
        }
        if cache::looks_like_url(name_or_url) {
            let wanted = cache::parse_url(name_or_url)?;
            return Ok(caches.into_iter().find(|c| same_cache(&c.kind, &wanted)));
        }
        Ok(None)
    }

    /// Adds or replaces a cache's entry, keeping comments elsewhere in the file. Every shape
    /// [`Config::caches`] reads is edited in place: `[caches.NAME]` sections, inline tables
    /// (`NAME = { ... }`), dotted keys (`NAME.url = ...`, `caches.NAME.url = ...`); an error
    /// names the key that is in the way.
    pub fn upsert_cache(&mut self, c: &CacheEntry) -> Result<()> {
        let t = self
            .cache_table_mut(&c.name, true)?
            .with_context(|| format!("caches.{}: cannot add the cache's entry here", c.name))?;
        write_entry(t, c);
        Ok(())
    }

    /// The `caches` table, made (implicit, as `[caches.NAME]` sections make it) when missing
    /// and `create` is set.
    fn caches_mut(&mut self, create: bool) -> Result<Option<&mut dyn TableLike>> {
        if self.doc.get("caches").is_none() {
            if !create {
                return Ok(None);
            }
            let mut t = Table::new();
            t.set_implicit(true);
            self.doc.insert("caches", Item::Table(t));
        }
        match self.doc.get_mut("caches").and_then(Item::as_table_like_mut) {
            Some(t) => Ok(Some(t)),
            None => bail!("caches: must be a table of [caches.NAME] sections"),
        }
    }

    /// Cache `name`'s table, whatever its shape; with `create`, a missing one is added in the
    /// shape of the `caches` table around it (so the file stays valid TOML).
    fn cache_table_mut(&mut self, name: &str, create: bool) -> Result<Option<&mut dyn TableLike>> {
        let new_entry = match self.doc.get("caches") {
            Some(Item::Value(_)) => Item::Value(Value::InlineTable(InlineTable::new())),
            Some(Item::Table(t)) if t.is_dotted() => {
                let mut t = Table::new();
                t.set_dotted(true);
                Item::Table(t)
            }
            _ => Item::Table(Table::new()),
        };
        let Some(caches) = self.caches_mut(create)? else {
            return Ok(None);
        };
        if !caches.contains_key(name) {
            if !create {
                return Ok(None);
            }
            caches.insert(name, new_entry);
        }
        match caches.get_mut(name).and_then(Item::as_table_like_mut) {
            Some(t) => Ok(Some(t)),
            None => bail!("caches.{name}: must be a table"),
        }
    }

    pub fn remove_cache(&mut self, name: &str) -> bool {
        let removed = self
            .doc
            .get_mut("caches")
            .and_then(Item::as_table_like_mut)
            .and_then(|t| t.remove(name));
        match removed {
            Some(Item::Table(t)) => {
                self.keep_leading_comments(&t);
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// toml_edit gives a `[section]` every comment above it, also a paragraph that a blank
    /// line sets apart (the file's opening comment, say): that part stays, above whatever
    /// section came next (or at the end).
    fn keep_leading_comments(&mut self, removed: &Table) {
        let prefix = removed.decor().prefix().and_then(|p| p.as_str());
        let Some(kept) = prefix.and_then(|p| p.rfind("\n\n").map(|cut| &p[..cut + 2])) else {
            return;
        };
        if !kept.contains('#') {
            return;
        }
        let kept = kept.to_string();
        let after = removed.position().unwrap_or(isize::MAX);
        match next_section(self.doc.as_table_mut(), after) {
            Some(t) => {
                let old = t.decor().prefix().and_then(|p| p.as_str()).unwrap_or("");
                let new = format!("{kept}{old}");
                t.decor_mut().set_prefix(new);
            }
            None => {
                let old = self.doc.trailing().as_str().unwrap_or("").to_string();
                self.doc.set_trailing(format!("{kept}{old}"));
            }
        }
    }
}

/// Where a cache's signing key for uploads is (`secret-key` in its section): a file `use
/// --secret-key` recorded, or the keyring (`secret set --signing-key-stdin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKey {
    File(PathBuf),
    Keyring,
}

impl SigningKey {
    /// Checks a recorded value: `"keyring"` or an absolute path that can go into a store URL's
    /// query (`?secret-key=PATH`) as it is.
    pub fn parse(value: &str) -> Result<SigningKey> {
        if value == "keyring" {
            return Ok(SigningKey::Keyring);
        }
        let path = Path::new(value);
        if !path.is_absolute() {
            // Perhaps the secret key itself, pasted where its path belongs: never shown.
            bail!(
                "{} is neither \"keyring\" nor an absolute path",
                crate::redact::secret("value", value)
            );
        }
        cache::reject_unsafe_chars(value, "secret key path")?;
        if value.contains(['?', '&', '%']) {
            bail!("the secret key path may not contain '?', '&' or '%'");
        }
        Ok(SigningKey::File(path.to_path_buf()))
    }

    pub fn as_value(&self) -> String {
        match self {
            SigningKey::File(p) => p.display().to_string(),
            SigningKey::Keyring => "keyring".into(),
        }
    }
}

impl Config {
    /// The signing key recorded for cache `name`; an error names the key.
    pub fn signing_key(&self, name: &str) -> Result<Option<SigningKey>> {
        let item = self
            .doc
            .get("caches")
            .and_then(|c| c.get(name))
            .and_then(|t| t.get("secret-key"));
        match item {
            None => Ok(None),
            Some(v) => {
                let text = v
                    .as_str()
                    .with_context(|| format!("caches.{name}.secret-key: must be a string"))?;
                SigningKey::parse(text)
                    .map(Some)
                    .map_err(|e| at_place(format!("caches.{name}.secret-key"), e))
            }
        }
    }

    /// Records (or, with `None`, forgets) the signing key of a recorded cache, whatever the
    /// shape of its entry; `false` when no such cache is recorded.
    pub fn set_signing_key(&mut self, name: &str, key: Option<&SigningKey>) -> Result<bool> {
        let Some(t) = self.cache_table_mut(name, false)? else {
            return Ok(false);
        };
        match key {
            Some(k) => set_if_changed(t, "secret-key", &k.as_value()),
            None => {
                t.remove("secret-key");
            }
        }
        Ok(true)
    }
}

/// The section (a table with a `[header]`, or one of `[[array]]`) that comes first after
/// document position `after`.
fn next_section(t: &mut Table, after: isize) -> Option<&mut Table> {
    fn best(t: &Table, after: isize) -> Option<isize> {
        let mut found: Option<isize> = None;
        let mut consider = |p: Option<isize>| {
            if let Some(p) = p.filter(|p| *p > after) {
                found = Some(found.map_or(p, |f| f.min(p)));
            }
        };
        for (_, item) in t.iter() {
            match item {
                Item::Table(sub) => {
                    if !sub.is_implicit() && !sub.is_dotted() {
                        consider(sub.position());
                    }
                    consider(best(sub, after));
                }
                Item::ArrayOfTables(a) => {
                    for sub in a.iter() {
                        consider(sub.position());
                        consider(best(sub, after));
                    }
                }
                _ => {}
            }
        }
        found
    }
    fn take(t: &mut Table, at: isize) -> Option<&mut Table> {
        for (_, item) in t.iter_mut() {
            let subs: Vec<&mut Table> = match item {
                Item::Table(sub) => vec![sub],
                Item::ArrayOfTables(a) => a.iter_mut().collect(),
                _ => continue,
            };
            for sub in subs {
                if sub.position() == Some(at) && !sub.is_implicit() && !sub.is_dotted() {
                    return Some(sub);
                }
                if let Some(found) = take(sub, at) {
                    return Some(found);
                }
            }
        }
        None
    }
    let at = best(t, after)?;
    take(t, at)
}

/// Writes a cache's fields into its table (any shape), touching only values that changed so
/// that the user's formatting of the others stays.
fn write_entry(t: &mut dyn TableLike, c: &CacheEntry) {
    set_if_changed(t, "kind", c.kind.label());
    set_if_changed(t, "url", &c.kind.url());
    let keys: Vec<&str> = t
        .get("public-keys")
        .and_then(Item::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if keys != c.public_keys.iter().map(String::as_str).collect::<Vec<_>>() {
        let mut arr = Array::new();
        for k in &c.public_keys {
            arr.push(k.as_str());
        }
        t.insert("public-keys", value(arr));
    }
    set_if_changed(t, "login", &c.login);
    set_if_changed(t, "secret-store", c.secret_store.as_str());
    if t.get("token").and_then(Item::as_bool) != Some(c.has_token) {
        t.insert("token", value(c.has_token));
    }
    if c.added_netrc_line {
        if t.get("added-netrc-file").and_then(Item::as_bool) != Some(true) {
            t.insert("added-netrc-file", value(true));
        }
    } else {
        t.remove("added-netrc-file");
    }
    match &c.nix_conf {
        Some(p) => set_if_changed(t, "nix-conf", &p.display().to_string()),
        None => {
            t.remove("nix-conf");
        }
    }
    match &c.netrc {
        Some(p) => set_if_changed(t, "netrc", &p.display().to_string()),
        None => {
            t.remove("netrc");
        }
    }
    write_https(t, &c.https);
}

/// The HTTPS settings: a default value is never written (a file of defaults stays as it was; a
/// default the user wrote stays too), anything else always.
fn write_https(t: &mut dyn TableLike, h: &HttpsSettings) {
    let d = HttpsSettings::default();
    let set = |t: &mut dyn TableLike, key: &str, v: Option<String>, default: bool| match v {
        Some(v) if !default => set_if_changed(t, key, &v),
        // A default the user wrote stays; one that replaces another value goes.
        Some(v) if t.get(key).and_then(Item::as_str) == Some(v.as_str()) => {}
        _ => {
            t.remove(key);
        }
    };
    set(
        t,
        "route",
        Some(h.route.as_str().into()),
        h.route == d.route,
    );
    set(t, "auth", Some(h.auth.as_str().into()), h.auth == d.auth);
    set(t, "token-command", h.token_command.clone(), false);
    set(
        t,
        "ca-file",
        h.ca_file.as_ref().map(|p| p.display().to_string()),
        false,
    );
    match h.token_ttl {
        Some(v) => {
            let v = i64::try_from(v).unwrap_or(i64::MAX);
            if t.get("token-ttl").and_then(Item::as_integer) != Some(v) {
                t.insert("token-ttl", value(v));
            }
        }
        None => {
            t.remove("token-ttl");
        }
    }
}

/// One `[caches.NAME]` section. Pure: a TOML item in, a checked entry or an error naming the key.
fn read_cache(name: &str, item: &Item) -> Result<CacheEntry> {
    // A name that is not a valid one is shown quoted, so that it cannot garble the message.
    let at = |key: &str| {
        let shown = if cache::validate_name(name).is_ok() {
            name.to_string()
        } else {
            format!("{name:?}")
        };
        match key {
            "" => format!("caches.{shown}"),
            key => format!("caches.{shown}.{key}"),
        }
    };
    cache::validate_name(name).map_err(|e| at_place(at(""), e))?;
    let t = item
        .as_table_like()
        .with_context(|| format!("{}: must be a table", at("")))?;
    let str_of = |key: &str| -> Result<Option<&str>> {
        match t.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .with_context(|| format!("{}: must be a string", at(key))),
        }
    };
    let url = str_of("url")?.with_context(|| format!("{}: missing", at("url")))?;
    let kind = cache::parse_recorded(url, str_of("kind")?).map_err(|e| at_place(at("url"), e))?;
    let public_keys = match t.get("public-keys") {
        None => Vec::new(),
        Some(v) => {
            let keys = v
                .as_array()
                .with_context(|| format!("{}: must be an array of strings", at("public-keys")))?;
            let mut out = Vec::new();
            for k in keys {
                let k = k.as_str().with_context(|| {
                    format!("{}: must be an array of strings", at("public-keys"))
                })?;
                cache::validate_public_key(k).map_err(|e| at_place(at("public-keys"), e))?;
                out.push(k.to_string());
            }
            out
        }
    };
    let login = str_of("login")?.unwrap_or(DEFAULT_LOGIN);
    cache::validate_login(login).map_err(|e| at_place(at("login"), e))?;
    let secret_store = match str_of("secret-store")? {
        None | Some("netrc") => SecretStore::Netrc,
        Some("keyring") => SecretStore::Keyring,
        Some(other) => bail!(
            "{}: {other:?} is not known: use \"netrc\" or \"keyring\"",
            at("secret-store")
        ),
    };
    let https = read_https(t, &kind, &at)?;
    Ok(CacheEntry {
        name: name.to_string(),
        kind,
        public_keys,
        login: login.to_string(),
        secret_store,
        nix_conf: t.get("nix-conf").and_then(Item::as_str).map(PathBuf::from),
        netrc: t.get("netrc").and_then(Item::as_str).map(PathBuf::from),
        has_token: t.get("token").and_then(Item::as_bool).unwrap_or(false),
        added_netrc_line: t
            .get("added-netrc-file")
            .and_then(Item::as_bool)
            .unwrap_or(false),
        https,
    })
}

/// An entry's HTTPS settings, with the command line's rules (`use`'s usage errors included).
fn read_https(
    t: &dyn TableLike,
    kind: &CacheKind,
    at: &dyn Fn(&str) -> String,
) -> Result<HttpsSettings> {
    const KEYS: [&str; 5] = ["route", "auth", "token-command", "ca-file", "token-ttl"];
    if kind.is_object_store() {
        if let Some(k) = KEYS.iter().find(|k| t.contains_key(k)) {
            bail!("{}: applies to HTTPS caches only", at(k));
        }
        return Ok(HttpsSettings::default());
    }
    let str_of = |key: &str| -> Result<Option<&str>> {
        match t.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .with_context(|| format!("{}: must be a string", at(key))),
        }
    };
    let route = match str_of("route")? {
        None => RouteChoice::default(),
        Some(v) => RouteChoice::parse(v).with_context(|| {
            format!(
                "{}: {v:?} is not known: use \"auto\", \"netrc\" or \"proxy\"",
                at("route")
            )
        })?,
    };
    let auth = match str_of("auth")? {
        None => Auth::default(),
        Some(v) => Auth::parse(v).with_context(|| {
            format!(
                "{}: {v:?} is not known: use \"basic\" or \"bearer\"",
                at("auth")
            )
        })?,
    };
    let token_command = match str_of("token-command")? {
        None => None,
        Some(v) => {
            crate::token_command::split(v).map_err(|e| at_place(at("token-command"), e))?;
            Some(v.to_string())
        }
    };
    let ca_file = match str_of("ca-file")? {
        None => None,
        Some(v) => {
            let p = PathBuf::from(v);
            check_ca_file(&p).map_err(|e| at_place(at("ca-file"), e))?;
            Some(p)
        }
    };
    let token_ttl = match t.get("token-ttl") {
        None => None,
        Some(v) => {
            let max = crate::token_command::MAX_TTL;
            let n = v
                .as_integer()
                .and_then(|n| u64::try_from(n).ok())
                .filter(|n| (1..=max).contains(n))
                .with_context(|| {
                    format!(
                        "{}: must be a number of seconds from 1 to {max}",
                        at("token-ttl")
                    )
                })?;
            Some(n)
        }
    };
    crate::nix::https_route::check_flags(crate::nix::https_route::Flags {
        route: Some(route),
        auth: Some(auth),
        token_command: token_command.is_some(),
        ..Default::default()
    })
    .map_err(|e| at_place(at(""), e))?;
    Ok(HttpsSettings {
        route,
        auth,
        token_command,
        ca_file,
        token_ttl,
    })
}

/// The netrc login when neither `--login` nor config.toml gives one.
pub const DEFAULT_LOGIN: &str = "nixstore-auth";

/// Only `Item::Value`s are inserted: an inline table (`TableLike` of `NAME = { ... }`) can hold
/// nothing else.
fn set_if_changed(t: &mut dyn TableLike, key: &str, v: &str) {
    if t.get(key).and_then(Item::as_str) != Some(v) {
        t.insert(key, value(v));
    }
}

/// Two cache refs name the same cache: same URL, or same bucket and prefix.
pub fn same_cache(a: &CacheKind, b: &CacheKind) -> bool {
    match (a, b) {
        (CacheKind::Https { .. }, CacheKind::Https { .. }) => a.url() == b.url(),
        (CacheKind::S3(x), CacheKind::S3(y)) => x.bucket == y.bucket && x.prefix == y.prefix,
        (CacheKind::Gcs(x), CacheKind::Gcs(y)) => x.bucket == y.bucket && x.prefix == y.prefix,
        (CacheKind::Azure(x), CacheKind::Azure(y)) => {
            (&x.account, &x.container, &x.prefix) == (&y.account, &y.container, &y.prefix)
        }
        _ => false,
    }
}

/// `PLACE: why` as one message: a file and a key lead to the reason, they are not causes.
fn at_place(place: impl std::fmt::Display, e: anyhow::Error) -> anyhow::Error {
    anyhow::anyhow!("{place}: {e:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_read_and_a_wrong_type_is_an_error_naming_the_key() {
        let p = Path::new("/c.toml");
        let c = Config::parse("[proxy]\nredirect-nars = false\n", p).unwrap();
        assert_eq!(c.get_bool("proxy", "redirect-nars").unwrap(), Some(false));
        assert_eq!(c.get_bool("proxy", "other").unwrap(), None);
        let c = Config::parse("[proxy]\nredirect-nars = \"no\"\n", p).unwrap();
        let e = c.get_bool("proxy", "redirect-nars").unwrap_err();
        assert!(e.to_string().contains("[proxy] redirect-nars"), "{e}");
    }

    fn entry(name: &str, url: &str) -> CacheEntry {
        CacheEntry {
            name: name.into(),
            kind: cache::parse_url(url).unwrap(),
            public_keys: vec!["k-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=".into()],
            login: "nixstore-auth".into(),
            secret_store: SecretStore::Netrc,
            nix_conf: Some("/home/u/.config/nix/nix.conf".into()),
            netrc: None,
            has_token: true,
            added_netrc_line: false,
            https: HttpsSettings::default(),
        }
    }

    #[test]
    fn comments_survive_and_upsert_is_idempotent() {
        let text = "# my settings\nkeyring-backend = \"file\" # forced\n";
        let mut cfg = Config::parse(text, Path::new("c.toml")).unwrap();
        let e = entry("cache-example-org", "https://cache.example.org");
        cfg.upsert_cache(&e).unwrap();
        let once = cfg.to_text();
        assert!(once.starts_with(text), "{once}");
        let mut again = Config::parse(&once, Path::new("c.toml")).unwrap();
        again.upsert_cache(&e).unwrap();
        assert_eq!(again.to_text(), once);
        assert_eq!(again.caches().unwrap(), vec![e.clone()]);
        assert_eq!(again.find("https://cache.example.org/").unwrap(), Some(e));
        assert!(again.remove_cache("cache-example-org"));
        assert!(again.caches().unwrap().is_empty());
        assert!(again.to_text().starts_with(text));
    }

    #[test]
    fn recorded_values_follow_the_command_line_rules_and_errors_name_file_and_key() {
        const KEY: &str = "k-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";
        let good = format!("[caches.c]\nurl = \"https://c.org\"\npublic-keys = [\"{KEY}\"]\n");
        Config::parse(&good, Path::new("/c.toml")).unwrap();
        let cases = [
            // Each would put a second setting into nix.conf or NIX_CONFIG.
            (
                format!("[caches.c]\nurl = \"https://c.org\"\npublic-keys = [\"{KEY}\\nsubstituters = http://evil\"]\n"),
                "caches.c.public-keys: the public key contains a newline",
            ),
            (
                format!("[caches.c]\nurl = \"https://c.org\"\npublic-keys = [\"{KEY} #x\"]\n"),
                "caches.c.public-keys: the public key contains a space",
            ),
            (
                "[caches.c]\nurl = \"https://c.org\"\npublic-keys = \"k\"\n".into(),
                "caches.c.public-keys: must be an array of strings",
            ),
            (
                "[caches.c]\nurl = \"https://c.org\"\npublic-keys = [1]\n".into(),
                "caches.c.public-keys: must be an array of strings",
            ),
            (
                "[caches.c]\nurl = \"https://c.org/\\nx = y\"\n".into(),
                "caches.c.url: the cache URL contains a newline",
            ),
            (
                "[caches.c]\nurl = \"s3://b?region=eu-west-1%26endpoint%3Dhttps%3A%2F%2Fother.host\"\n".into(),
                "caches.c.url: invalid S3 region",
            ),
            (
                "[caches.c]\nurl = \"s3://b?profile=a%0Ab\"\n".into(),
                "caches.c.url: invalid AWS profile name",
            ),
            (
                "[caches.c]\nurl = \"s3://b?endpoint=http://u@h\"\n".into(),
                "caches.c.url: the S3 endpoint",
            ),
            (
                "[caches.c]\nurl = \"https://c.org\"\nlogin = \"a b\"\n".into(),
                "caches.c.login: the login \"a b\" contains whitespace",
            ),
            (
                "[caches.c]\nurl = \"https://c.org\"\nlogin = \"\\\"x\"\n".into(),
                "caches.c.login: the login \"\\\"x\" contains a double quote",
            ),
            (
                "[caches.c]\nurl = \"https://c.org\"\nlogin = 3\n".into(),
                "caches.c.login: must be a string",
            ),
            (
                "[caches.\"a\\nb\"]\nurl = \"https://c.org\"\n".into(),
                "caches.\"a\\nb\": invalid cache name",
            ),
            (
                "[caches.Big]\nurl = \"https://c.org\"\n".into(),
                "caches.\"Big\": invalid cache name",
            ),
            ("[caches.c]\n".into(), "caches.c.url: missing"),
            (
                "[caches.c]\nurl = \"https://c.org\"\nsecret-store = \"vault\"\n".into(),
                "caches.c.secret-store: \"vault\" is not known",
            ),
        ];
        for (text, needle) in cases {
            let err = format!(
                "{:#}",
                Config::parse(&text, Path::new("/c.toml")).unwrap_err()
            );
            assert!(err.starts_with("/c.toml: "), "{text}: {err}");
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn https_settings_follow_the_command_line_rules_in_every_shape() {
        let p = Path::new("/c.toml");
        let bad = [
            ("route = \"via\"", "caches.c.route: \"via\" is not known"),
            (
                "auth = \"digest\"",
                "caches.c.auth: \"digest\" is not known",
            ),
            ("auth = 1", "caches.c.auth: must be a string"),
            (
                "token-command = \"cat t | jq\"",
                "caches.c.token-command: the token command uses '|'",
            ),
            (
                "token-command = \"\"",
                "caches.c.token-command: the token command is empty",
            ),
            (
                "ca-file = \"ca.pem\"",
                "caches.c.ca-file: the CA file must be given as an absolute path",
            ),
            (
                "ca-file = \"/a\\nb\"",
                "caches.c.ca-file: the CA file path contains a newline",
            ),
            (
                "token-ttl = 0",
                "caches.c.token-ttl: must be a number of seconds from 1 to 86400",
            ),
            ("token-ttl = \"5\"", "caches.c.token-ttl: must be a number"),
            (
                "route = \"netrc\"\nauth = \"bearer\"",
                "caches.c: --auth bearer cannot be used with --route netrc",
            ),
            (
                "route = \"netrc\"\ntoken-command = \"gh auth token\"",
                "caches.c: --token-command cannot be used with --route netrc",
            ),
        ];
        for (extra, needle) in bad {
            let text = format!("[caches.c]\nurl = \"https://c.org\"\n{extra}\n");
            let err = format!("{:#}", Config::parse(&text, p).unwrap_err());
            assert!(err.contains(needle), "{extra}: {err}");
        }
        let err = format!(
            "{:#}",
            Config::parse("[caches.b]\nurl = \"s3://b\"\nroute = \"proxy\"\n", p).unwrap_err()
        );
        assert!(
            err.contains("caches.b.route: applies to HTTPS caches only"),
            "{err}"
        );

        let mut e = entry("c", "https://c.org");
        e.https = HttpsSettings {
            route: RouteChoice::Proxy,
            auth: Auth::Bearer,
            token_command: Some("gh auth token".into()),
            ca_file: Some("/etc/ca.pem".into()),
            token_ttl: Some(60),
        };
        for shape in [
            "# top\n",
            "[caches]\nc = { url = \"https://c.org\" } # inline\n",
            "caches.c.url = \"https://c.org\" # dotted\n",
            "[caches.c]\nurl = \"https://c.org\"\nroute = \"auto\" # mine\n",
        ] {
            let mut cfg = Config::parse(shape, p).unwrap();
            cfg.upsert_cache(&e).unwrap();
            let text = cfg.to_text();
            let again = Config::parse(&text, p).unwrap();
            assert_eq!(again.cache("c").unwrap().unwrap().https, e.https, "{text}");
            assert_eq!(e.https.ttl(), 60);
            // Back to the defaults: the keys go, except one the user wrote.
            let mut cfg = again;
            cfg.upsert_cache(&entry("c", "https://c.org")).unwrap();
            let text = cfg.to_text();
            for k in ["auth", "token-command", "ca-file", "token-ttl"] {
                assert!(!text.contains(&format!("{k} =")), "{k} left in {text}");
            }
            assert!(!text.contains("route ="), "{text}");
            let back = Config::parse(&text, p).unwrap();
            assert!(back.cache("c").unwrap().unwrap().https.is_default());
        }
        // A default the user wrote stays.
        let mine = "[caches.c]\nurl = \"https://c.org\"\nroute = \"auto\" # mine\n";
        let mut cfg = Config::parse(mine, p).unwrap();
        cfg.upsert_cache(&entry("c", "https://c.org")).unwrap();
        assert!(cfg.to_text().contains("route = \"auto\" # mine"));
        // A file of defaults is not rewritten.
        let plain = "[caches.c]\nkind = \"https\"\nurl = \"https://c.org\"\n";
        let mut cfg = Config::parse(plain, p).unwrap();
        let e = cfg.cache("c").unwrap().unwrap();
        cfg.upsert_cache(&e).unwrap();
        assert!(!cfg.to_text().contains("route"));
        assert_eq!(e.https.ttl(), crate::token_command::DEFAULT_TTL);
    }

    #[test]
    fn the_recorded_route_and_why() {
        use crate::nix::https_route::{Route, Why};
        let mut e = entry("c", "https://c.org");
        assert_eq!(e.https_route(true), Some((Route::Netrc, Why::StaticBasic)));
        e.secret_store = SecretStore::Keyring;
        assert_eq!(e.https_route(false), Some((Route::Netrc, Why::KeyringExec)));
        assert_eq!(
            e.https_route(true),
            Some((Route::Proxy, Why::KeyringService))
        );
        e.https.token_command = Some("gh auth token".into());
        e.has_token = false;
        assert_eq!(e.https_route(false), Some((Route::Proxy, Why::Command)));
        assert_eq!(entry("b", "s3://b").https_route(true), None);
    }

    #[test]
    fn a_signing_key_is_recorded_checked_and_survives_upserts() {
        let p = Path::new("/c.toml");
        let mut cfg = Config::parse("", p).unwrap();
        let e = entry("c", "https://c.org");
        assert!(
            !cfg.set_signing_key("c", Some(&SigningKey::Keyring))
                .unwrap()
        );
        cfg.upsert_cache(&e).unwrap();
        assert!(
            cfg.set_signing_key("c", Some(&SigningKey::File("/k/sk".into())))
                .unwrap()
        );
        cfg.upsert_cache(&e).unwrap();
        let cfg = Config::parse(&cfg.to_text(), p).unwrap();
        assert_eq!(
            cfg.signing_key("c").unwrap(),
            Some(SigningKey::File("/k/sk".into()))
        );
        for bad in ["rel/sk", "/k/a b", "/k/sk?x=1", "/k/s\nk"] {
            let text = format!("[caches.c]\nurl = \"https://c.org\"\nsecret-key = {bad:?}\n");
            let err = format!("{:#}", Config::parse(&text, p).unwrap_err());
            assert!(err.contains("caches.c.secret-key"), "{bad}: {err}");
        }
        assert_eq!(SigningKey::parse("keyring").unwrap(), SigningKey::Keyring);
    }

    fn upsert(cfg: &mut Config, e: &CacheEntry) -> Result<()> {
        cfg.upsert_cache(e)
    }
    fn signing(cfg: &mut Config, name: &str, key: Option<&SigningKey>) -> Result<bool> {
        cfg.set_signing_key(name, key)
    }

    /// The shapes TOML allows for the same cache: each must be editable in place.
    const SHAPES: [&str; 5] = [
        "[caches.my]\nkind = \"https\"\nurl = \"https://my.org\"\n",
        "[caches]\nmy = { kind = \"https\", url = \"https://my.org\" } # inline\n",
        "[caches]\nmy.kind = \"https\"\nmy.url = \"https://my.org\"\n",
        "caches.my.kind = \"https\"\ncaches.my.url = \"https://my.org\"\n",
        "caches = { my = { url = \"https://my.org\" } }\n",
    ];

    #[test]
    fn every_shape_of_a_recorded_cache_is_editable() {
        let p = Path::new("/c.toml");
        for shape in SHAPES {
            let text = format!("# mine\n{shape}\n[proxy]\nport = 1\n");
            let mut cfg = Config::parse(&text, p).unwrap();
            let mut e = entry("my", "https://my.org");
            upsert(&mut cfg, &e).unwrap();
            let again = Config::parse(&cfg.to_text(), p).unwrap();
            assert_eq!(again.cache("my").unwrap(), Some(e.clone()), "{shape}");
            e.has_token = false;
            upsert(&mut cfg, &e).unwrap();
            // A second cache lands beside the first, whatever the first one's shape.
            let other = entry("other", "s3://bucket?region=eu-west-1");
            upsert(&mut cfg, &other).unwrap();
            assert!(
                signing(&mut cfg, "my", Some(&SigningKey::Keyring)).unwrap(),
                "{shape}"
            );
            let again = Config::parse(&cfg.to_text(), p).unwrap();
            assert_eq!(again.caches().unwrap(), vec![e.clone(), other], "{shape}");
            assert_eq!(again.signing_key("my").unwrap(), Some(SigningKey::Keyring));
            assert!(again.to_text().contains("# mine"), "{}", again.to_text());
            assert_eq!(again.get_int(Some("proxy"), "port"), Some(1));
            assert!(signing(&mut cfg, "my", None).unwrap());
            assert!(cfg.remove_cache("other"));
            assert!(cfg.remove_cache("my"));
            let again = Config::parse(&cfg.to_text(), p).unwrap();
            assert!(again.caches().unwrap().is_empty(), "{}", cfg.to_text());
        }
    }

    /// Arbitrary valid config.toml documents: caches in every shape TOML allows, mixed with
    /// comments, unrelated keys, sections and arrays of tables.
    mod docs {
        use proptest::prelude::*;

        pub const URLS: [&str; 4] = [
            "https://cache.example.org",
            "http://127.0.0.1:8080/sub",
            "s3://bucket/pre?region=eu-west-1",
            "s3://b?endpoint=http://127.0.0.1:9000&profile=work",
        ];
        const KEY: &str = "k-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

        /// One cache's key/value pairs, in TOML syntax.
        fn fields() -> impl Strategy<Value = Vec<(&'static str, String)>> {
            (
                0..URLS.len(),
                any::<bool>(),
                proptest::option::of(any::<bool>()),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            )
                .prop_map(|(url, kind, token, keys, note, secret)| {
                    let mut f = vec![("url", format!("{:?}", URLS[url]))];
                    if kind {
                        let k = if URLS[url].starts_with("s3") {
                            "s3"
                        } else {
                            "https"
                        };
                        f.insert(0, ("kind", format!("{k:?}")));
                    }
                    if let Some(t) = token {
                        f.push(("token", t.to_string()));
                    }
                    if keys {
                        f.push(("public-keys", format!("[{KEY:?}]")));
                    }
                    if note {
                        f.push(("note", "\"kept # not a comment\"".into()));
                    }
                    if secret {
                        f.push(("secret-key", "\"keyring\"".into()));
                    }
                    f
                })
        }

        #[derive(Debug, Clone, Copy)]
        enum Entry {
            Section,
            Inline,
            Dotted,
        }

        #[derive(Debug, Clone)]
        enum Style {
            None,
            /// `[caches.NAME]` sections, and a `[caches]` section with inline and dotted entries.
            Sections(Vec<Entry>),
            /// `caches.NAME.key = ...` at the top.
            RootDotted,
            /// `caches = { NAME = { ... } }` at the top.
            RootInline,
        }

        fn style(n: usize) -> impl Strategy<Value = Style> {
            let entry = prop_oneof![
                Just(Entry::Section),
                Just(Entry::Inline),
                Just(Entry::Dotted)
            ];
            prop_oneof![
                Just(Style::None),
                proptest::collection::vec(entry, n).prop_map(Style::Sections),
                Just(Style::RootDotted),
                Just(Style::RootInline),
            ]
        }

        const TOP: [&str; 4] = [
            "keyring-backend = \"file\"",
            "proxy-port = 5123 # fixed",
            "a.b.c = true",
            "mfa-base-session = false",
        ];
        const SECTIONS: [&str; 4] = [
            "[proxy]\nredirect-nars = false",
            "[[servers]]\nname = \"one\"\n\n[[servers]]\nname = \"two\" # second",
            "[other.deep]\nlist = [1, 2, # inside\n  3]",
            "# a comment alone\n[empty]",
        ];

        fn inline(f: &[(&str, String)]) -> String {
            let body: Vec<String> = f.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            format!("{{ {} }}", body.join(", "))
        }

        /// A document, and the names of the caches in it.
        pub fn doc() -> impl Strategy<Value = (String, Vec<String>)> {
            (
                proptest::collection::btree_set("[a-z][a-z0-9-]{0,5}", 0..4),
                proptest::sample::subsequence(TOP.to_vec(), 0..=TOP.len()),
                proptest::sample::subsequence(SECTIONS.to_vec(), 0..=SECTIONS.len()),
                any::<bool>(),
            )
                .prop_flat_map(|(names, top, sections, comments)| {
                    let names: Vec<String> = names.into_iter().collect();
                    let n = names.len();
                    (
                        Just(names),
                        proptest::collection::vec(fields(), n),
                        style(n),
                        Just(top),
                        Just(sections),
                        Just(comments),
                        any::<prop::sample::Index>(),
                    )
                })
                .prop_map(|(names, fields, style, top, sections, comments, at)| {
                    let c = |s: &str| {
                        if comments {
                            format!("# {s}\n")
                        } else {
                            String::new()
                        }
                    };
                    let mut head = c("my settings");
                    for t in &top {
                        head.push_str(&format!("{t}\n"));
                    }
                    let mut blocks: Vec<String> = sections.iter().map(|s| s.to_string()).collect();
                    let style = if names.is_empty() { Style::None } else { style };
                    match &style {
                        Style::None => {}
                        Style::RootDotted => {
                            for (name, f) in names.iter().zip(&fields) {
                                for (k, v) in f {
                                    head.push_str(&format!("caches.{name}.{k} = {v}\n"));
                                }
                            }
                        }
                        Style::RootInline => {
                            let all: Vec<String> = names
                                .iter()
                                .zip(&fields)
                                .map(|(n, f)| format!("{n} = {}", inline(f)))
                                .collect();
                            head.push_str(&format!("caches = {{ {} }}\n", all.join(", ")));
                        }
                        Style::Sections(entries) => {
                            let mut caches = String::new();
                            for ((name, f), e) in names.iter().zip(&fields).zip(entries) {
                                match e {
                                    Entry::Section => {
                                        let mut b = format!("{}[caches.{name}]\n", c(name));
                                        for (k, v) in f {
                                            b.push_str(&format!("{k} = {v}\n"));
                                        }
                                        blocks.push(b.trim_end().to_string());
                                    }
                                    Entry::Inline => {
                                        caches.push_str(&format!("{name} = {}\n", inline(f)));
                                    }
                                    Entry::Dotted => {
                                        for (k, v) in f {
                                            caches.push_str(&format!("{name}.{k} = {v}\n"));
                                        }
                                    }
                                }
                            }
                            if !caches.is_empty() {
                                let at = at.index(blocks.len() + 1);
                                blocks.insert(at, format!("[caches]\n{}", caches.trim_end()));
                            }
                        }
                    }
                    let mut text = head;
                    for b in blocks {
                        text.push('\n');
                        text.push_str(&b);
                        text.push('\n');
                    }
                    (text, names)
                })
        }
    }

    /// The document's meaning (comments and layout aside), to compare before and after.
    fn meaning(text: &str) -> serde_json::Value {
        use serde_json::Value as J;
        fn table(t: &dyn TableLike) -> J {
            J::Object(t.iter().map(|(k, v)| (k.to_string(), item(v))).collect())
        }
        fn item(i: &Item) -> J {
            match i {
                Item::None => J::Null,
                Item::Value(v) => val(v),
                Item::Table(t) => table(t),
                Item::ArrayOfTables(a) => J::Array(a.iter().map(|t| table(t)).collect()),
            }
        }
        fn val(v: &Value) -> J {
            match v {
                Value::String(s) => J::from(s.value().clone()),
                Value::Integer(i) => J::from(*i.value()),
                Value::Float(f) => J::from(f.value().to_string()),
                Value::Boolean(b) => J::from(*b.value()),
                Value::Datetime(d) => J::from(d.value().to_string()),
                Value::Array(a) => J::Array(a.iter().map(val).collect()),
                Value::InlineTable(t) => {
                    J::Object(t.iter().map(|(k, v)| (k.to_string(), val(v))).collect())
                }
            }
        }
        let doc: DocumentMut = text.parse().expect("valid TOML");
        let mut j = table(doc.as_table());
        // An emptied `caches` table and a missing one mean the same.
        if j["caches"] == serde_json::json!({}) {
            j.as_object_mut().map(|o| o.remove("caches"));
        }
        j
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn any_valid_document_survives_upsert_and_remove(
            (text, names) in docs::doc(),
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            new_name in "[a-z][a-z0-9-]{0,5}",
            existing in proptest::prelude::any::<bool>(),
            url in 0..docs::URLS.len(),
            token in proptest::prelude::any::<bool>(),
            netrc in proptest::prelude::any::<bool>(),
        ) {
            use proptest::{prop_assert, prop_assert_eq};
            let p = Path::new("/c.toml");
            let cfg = Config::parse(&text, p)
                .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e:#}\n{text}")))?;
            let before = cfg.caches().unwrap();
            let name = if existing && !names.is_empty() {
                names[pick.index(names.len())].clone()
            } else {
                new_name
            };
            let mut e = entry(&name, docs::URLS[url]);
            e.has_token = token;
            e.netrc = netrc.then(|| PathBuf::from("/home/u/.config/nix/netrc"));
            let mut cfg = cfg;
            cfg.upsert_cache(&e).unwrap();
            let once = cfg.to_text();
            let again = Config::parse(&once, p)
                .map_err(|err| proptest::test_runner::TestCaseError::fail(format!("{err:#}\n{text}\n---\n{once}")))?;
            prop_assert_eq!(again.cache(&name).unwrap(), Some(e.clone()), "{}", once);
            let others = |v: Vec<CacheEntry>| -> Vec<CacheEntry> {
                v.into_iter().filter(|c| c.name != name).collect()
            };
            prop_assert_eq!(others(again.caches().unwrap()), others(before.clone()), "{}", once);
            // Idempotent: the same upsert again changes nothing.
            cfg.upsert_cache(&e).unwrap();
            prop_assert_eq!(cfg.to_text(), once.clone());
            prop_assert!(cfg.set_signing_key(&name, Some(&SigningKey::Keyring)).unwrap());
            let signed = Config::parse(&cfg.to_text(), p).unwrap();
            prop_assert_eq!(signed.signing_key(&name).unwrap(), Some(SigningKey::Keyring));
            prop_assert!(cfg.remove_cache(&name));
            let after = cfg.to_text();
            let after_cfg = Config::parse(&after, p).unwrap();
            prop_assert_eq!(after_cfg.caches().unwrap(), others(before));
            // Everything else means what it meant: the other caches, sections, keys.
            let mut want = meaning(&text);
            if let Some(c) = want.get_mut("caches").and_then(|c| c.as_object_mut()) {
                c.remove(&name);
            }
            if want["caches"] == serde_json::json!({}) {
                want.as_object_mut().map(|o| o.remove("caches"));
            }
            prop_assert_eq!(meaning(&after), want, "{}\n---\n{}", text, after);
            // And the comments stay, except one right above the removed cache, which goes
            // with it.
            let lines: Vec<&str> = text.lines().collect();
            let of_removed = |l: &str| {
                [format!("caches.{name}."), format!("[caches.{name}]"), format!("{name} = "), format!("{name}.")]
                    .iter()
                    .any(|p| l.starts_with(p.as_str()))
            };
            for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.starts_with('#')) {
                let next = lines[i + 1..].iter().find(|l| !l.starts_with('#'));
                if next.is_some_and(|l| of_removed(l)) {
                    continue;
                }
                prop_assert!(after.contains(line), "{} lost in\n{}", line, after);
            }
        }
    }

    #[test]
    fn broken_config_names_the_file() {
        let err =
            Config::parse("[caches.x]\nurl = \"ftp://x\"\n", Path::new("/c.toml")).unwrap_err();
        assert!(format!("{err:#}").contains("/c.toml"));
        assert!(Config::parse("[[[", Path::new("/c.toml")).is_err());
    }
}
