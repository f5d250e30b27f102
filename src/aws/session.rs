//! The AWS session of a command: resolve it, cache it, hand it to a child.
//!
//! # API for other commands (exec, push, doctor)
//!
//! - [`resolve`]`(&SessionRequest, &Ui) -> Result<Session>`: the session to use now. Order:
//!   1. credentials already in the environment (`AWS_ACCESS_KEY_ID`, ...), unless an explicit
//!      profile (`--profile` or the cache ref's `profile=`) differs from the marker
//!      `NIXSTORE_AUTH_PROFILE` an outer `exec` left (so a nested `exec` reuses the outer session);
//!   2. the profile (`--profile`, else the S3 cache ref's `profile=`, else `AWS_PROFILE`, else
//!      `default`) read from the AWS config files: long-term keys are used as they are; a role
//!      chain or `mfa_serial` needs STS, whose result is cached in the secret store (keyring,
//!      else 0600 files) and reused until `session-refresh-margin` seconds (default 300) remain.
//!      The MFA code is obtained before any STS client exists. SSO, `credential_process` and web
//!      identity are delegated to aws-config's profile provider.
//!
//!   STS is reached at `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else the profile's
//!   `endpoint_url`. A tokio runtime is created only for STS/SSO work, never on a cache hit.
//! - [`cached_only`]: the same, but never prompts and never calls STS (for `doctor`): `None`
//!   when a fresh login would be needed.
//! - [`session_env`] / [`session_unset`]: the variables to set (`AWS_ACCESS_KEY_ID`,
//!   `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_CREDENTIAL_EXPIRATION`, `AWS_REGION`,
//!   `AWS_DEFAULT_REGION`, `NIXSTORE_AUTH_PROFILE`) and to remove (`AWS_PROFILE`,
//!   `AWS_DEFAULT_PROFILE`, `AWS_SECURITY_TOKEN`, plus token/expiry when the session has none)
//!   in a child's environment.
//! - [`caller_identity`]: GetCallerIdentity with a session (for `login` and `doctor`).
//!
//! Nothing here prints or logs a secret: messages carry profile names, ARNs and key ids only.

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata};
use zeroize::Zeroizing;

use super::Credentials;
use super::mfa::{CodeSource, MfaCodes};
use super::profile::{self, Base, Plan};
use super::session_cache;
use crate::config::{Config, Dirs};
use crate::secret::{Account, SecretStore};
use crate::ui::Ui;

/// Marker set in `exec`'s child: the profile whose session the environment holds.
pub const MARKER: &str = "NIXSTORE_AUTH_PROFILE";
/// Profiles being resolved by an outer nixstore-auth (colon separated): a profile whose own
/// `credential_process` calls us for itself would otherwise recurse forever.
pub const RESOLVING: &str = "NIXSTORE_AUTH_RESOLVING";
/// Variables `exec` always removes from the child's environment.
pub const UNSET_VARS: &[&str] = &["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN"];

/// What the caller wants a session for.
#[derive(Debug, Clone, Default)]
pub struct SessionRequest {
    /// `--profile`.
    pub profile: Option<String>,
    /// A recorded cache name or an `s3://` URL whose `profile=` and `region=` apply.
    pub cache: Option<String>,
    /// `--mfa-code` / NIXSTORE_AUTH_MFA_CODE.
    pub mfa_code: Option<String>,
    /// `--duration`: session length in seconds.
    pub duration: Option<u32>,
    /// Get a new session even if a cached one is still good (`login`).
    pub force_refresh: bool,
}

/// Where a session came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The caller's environment (CI, `aws sso` exports, an outer `exec`).
    Environment,
    /// The session cache.
    Cache,
    /// A new STS session, now cached.
    Fresh,
    /// The profile's own credentials: long-term keys or aws-config's chain (not cached by us).
    Profile,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Environment => "environment",
            Origin::Cache => "cache",
            Origin::Fresh => "fresh",
            Origin::Profile => "profile",
        }
    }
}

/// A resolved session. `Debug` shows no secret (see [`Credentials`]).
#[derive(Debug, Clone)]
pub struct Session {
    pub credentials: Credentials,
    /// The profile, `None` for credentials taken from the environment without a marker.
    pub profile: Option<String>,
    pub region: Option<String>,
    pub origin: Origin,
    /// The STS endpoint override in force, if any.
    pub sts_endpoint: Option<String>,
}

/// Who a session belongs to.
#[derive(Debug, Clone)]
pub struct Identity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
}

/// Which profile and region a request means.
struct Target {
    profile: String,
    /// Named by `--profile` or a cache ref (not just `AWS_PROFILE` or the default).
    explicit: bool,
    region: Option<String>,
}

fn target(req: &SessionRequest, cfg: &Config) -> Result<Target> {
    let mut region = None;
    let mut cache_profile = None;
    if let Some(c) = &req.cache {
        let kind = if crate::cache::looks_like_url(c) {
            crate::cache::parse_url(c)?
        } else {
            cfg.find(c)?
                .with_context(|| {
                    format!("no cache named {c:?} is recorded: see `nixstore-auth list`")
                })?
                .kind
        };
        let crate::cache::CacheKind::S3(s3) = kind else {
            bail!("{c:?} is not an S3 cache: AWS sessions are for s3:// caches");
        };
        region = s3.region;
        cache_profile = s3.profile;
    }
    if let Some(p) = req.profile.clone().or(cache_profile) {
        return Ok(Target {
            profile: p,
            explicit: true,
            region,
        });
    }
    let profile = std::env::var("AWS_PROFILE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".to_string());
    Ok(Target {
        profile,
        explicit: false,
        region,
    })
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

fn env_region() -> Option<String> {
    env_nonempty("AWS_REGION").or_else(|| env_nonempty("AWS_DEFAULT_REGION"))
}

fn sts_endpoint(plan: Option<&Plan>) -> Option<String> {
    env_nonempty("AWS_ENDPOINT_URL_STS")
        .or_else(|| env_nonempty("AWS_ENDPOINT_URL"))
        .or_else(|| plan.and_then(|p| p.endpoint_url.clone()))
}

/// Credentials from the environment, when they apply to this target.
fn from_environment(t: &Target, ui: &Ui) -> Option<Session> {
    let akid = env_nonempty("AWS_ACCESS_KEY_ID")?;
    let secret = Zeroizing::new(env_nonempty("AWS_SECRET_ACCESS_KEY")?);
    let marker = env_nonempty(MARKER);
    if t.explicit && marker.as_deref() != Some(t.profile.as_str()) {
        ui.debug(format!(
            "ignoring AWS credentials in the environment: profile {:?} was asked for",
            t.profile
        ));
        return None;
    }
    let expiration =
        env_nonempty("AWS_CREDENTIAL_EXPIRATION").and_then(|s| crate::time::parse_rfc3339(&s));
    if expiration.is_some_and(|e| e <= crate::time::now()) {
        ui.debug("the AWS credentials in the environment have expired; not using them");
        return None;
    }
    ui.debug(format!(
        "using AWS credentials from the environment ({akid})"
    ));
    Some(Session {
        credentials: Credentials {
            access_key_id: akid,
            secret_access_key: secret,
            session_token: env_nonempty("AWS_SESSION_TOKEN")
                .or_else(|| env_nonempty("AWS_SECURITY_TOKEN"))
                .map(Zeroizing::new),
            expiration,
        },
        profile: marker,
        region: t.region.clone().or_else(env_region),
        origin: Origin::Environment,
        sts_endpoint: sts_endpoint(None),
    })
}

/// Everything resolve needs besides the request.
struct Ctx {
    cfg: Config,
    dirs: Dirs,
}

impl Ctx {
    fn load() -> Result<Ctx> {
        let dirs = Dirs::new()?;
        let cfg = Config::load(&dirs.config_file())?;
        Ok(Ctx { cfg, dirs })
    }

    fn margin(&self) -> i64 {
        self.cfg
            .get_int(None, "session-refresh-margin")
            .unwrap_or(session_cache::DEFAULT_REFRESH_MARGIN)
    }
}

fn check_recursion(profile: &str) -> Result<()> {
    if let Some(list) = env_nonempty(RESOLVING)
        && list.split(':').any(|p| p == profile)
    {
        bail!(
            "profile {profile:?} is already being resolved by an outer nixstore-auth: its \
             credential_process calls nixstore-auth for the same profile. Point \
             credential_process at the profile that holds the role (e.g. `--profile {profile}-base`)"
        );
    }
    Ok(())
}

fn mark_resolving(profile: &str) {
    let value = match env_nonempty(RESOLVING) {
        Some(list) => format!("{list}:{profile}"),
        None => profile.to_string(),
    };
    // SAFETY: called before any thread is started in this process: the profile loader ran on a
    // driverless current-thread runtime, and neither the keyring nor an I/O runtime exists yet.
    unsafe { std::env::set_var(RESOLVING, value) };
}

/// The profiles, the target's plan, and the region and STS endpoint in force for it.
fn planned(
    t: &Target,
) -> Result<(
    aws_config::profile::ProfileSet,
    Plan,
    Option<String>,
    Option<String>,
)> {
    let set = profile::load_profiles()?;
    let plan = profile::plan(&set, &t.profile)?;
    let region = t
        .region
        .clone()
        .or_else(|| plan.region.clone())
        .or_else(env_region);
    let endpoint = sts_endpoint(Some(&plan));
    Ok((set, plan, region, endpoint))
}

/// The session to use now: environment, cache, or a fresh STS session (prompting for MFA).
pub fn resolve(req: &SessionRequest, ui: &Ui) -> Result<Session> {
    let ctx = Ctx::load()?;
    let t = target(req, &ctx.cfg)?;
    if !req.force_refresh
        && let Some(s) = from_environment(&t, ui)
    {
        return Ok(s);
    }
    check_recursion(&t.profile)?;
    let (set, plan, region, endpoint) = planned(&t)?;
    if matches!(plan.base, Base::Delegated { .. }) {
        mark_resolving(&t.profile);
    }

    if !plan.needs_sts() {
        let store = lazy_store(&ctx, ui);
        let creds = base_credentials(&set, &plan, &store, region.as_deref(), ui)?;
        return Ok(Session {
            credentials: creds,
            profile: Some(t.profile),
            region,
            origin: Origin::Profile,
            sts_endpoint: endpoint,
        });
    }

    let store = SecretStore::open(&ctx.cfg, &ctx.dirs, ui)?;
    let account = session_cache::account(&plan.profile, plan.role_arn(), plan.mfa_serial());
    if !req.force_refresh
        && let Some(hit) =
            session_cache::lookup(&store, &account, crate::time::now(), ctx.margin(), ui)?
    {
        ui.debug(format!(
            "using the cached session of profile {:?} ({})",
            plan.profile,
            store.describe()
        ));
        return Ok(Session {
            credentials: hit.credentials,
            profile: Some(t.profile),
            region: region.or(hit.region),
            origin: Origin::Cache,
            sts_endpoint: endpoint,
        });
    }

    // The code first: no SDK client (and no load timeout) exists while the user types.
    let mut codes = plan.mfa_serial().map(|serial| {
        MfaCodes::new(
            serial,
            &plan.profile,
            req.mfa_code.as_deref(),
            plan.mfa_process.as_deref(),
            ui,
        )
    });
    let mut code = match codes.as_mut() {
        Some(c) => Some(c.first()?),
        None => None,
    };
    let base = base_credentials(&set, &plan, &Some(store.clone()), region.as_deref(), ui)?;
    let rt = io_runtime()?;
    let sts_region = region.clone().unwrap_or_else(|| "us-east-1".to_string());
    let creds = loop {
        let attempt = rt.block_on(run_sts(
            &plan,
            &base,
            code.as_ref().map(|(c, _)| c.as_str()),
            req.duration,
            &sts_region,
            endpoint.as_deref(),
            ui,
        ));
        match attempt {
            Ok(c) => break c,
            Err(StsFailure::MfaRefused(msg)) => {
                let serial = plan.mfa_serial().unwrap_or("?");
                let last = code
                    .as_ref()
                    .map(|(_, s)| *s)
                    .unwrap_or(CodeSource::Argument);
                let next = match codes.as_mut() {
                    Some(c) if c.can_retry(last) => {
                        ui.warn(format!("STS refused the MFA code ({msg}); try again"));
                        c.retry(last)?
                    }
                    _ => None,
                };
                match next {
                    Some(n) => code = Some(n),
                    None => bail!(
                        "STS refused the MFA code for {serial} (profile {:?}): {msg}. Use the \
                         current code from the device (each code works once) and check the \
                         device's clock; nothing was cached",
                        plan.profile
                    ),
                }
            }
            Err(StsFailure::Other(e)) => return Err(e),
        }
    };
    session_cache::save(
        &store,
        &account,
        &plan.profile,
        plan.role_arn(),
        plan.mfa_serial(),
        region.as_deref(),
        &creds,
    )?;
    ui.debug(format!(
        "new session for profile {:?} ({}), cached in {}",
        plan.profile,
        creds.access_key_id,
        store.describe()
    ));
    Ok(Session {
        credentials: creds,
        profile: Some(t.profile),
        region,
        origin: Origin::Fresh,
        sts_endpoint: endpoint,
    })
}

/// A session without prompting, STS or SSO: the environment, long-term keys, or a cached
/// session that has not expired. `None` when only a login would give one.
pub fn cached_only(req: &SessionRequest, ui: &Ui) -> Result<Option<Session>> {
    let ctx = Ctx::load()?;
    let t = target(req, &ctx.cfg)?;
    if let Some(s) = from_environment(&t, ui) {
        return Ok(Some(s));
    }
    let (set, plan, region, endpoint) = planned(&t)?;
    let store = SecretStore::open(&ctx.cfg, &ctx.dirs, ui)?;
    if !plan.needs_sts() {
        // Long-term keys from the credentials file or the keyring (`aws add-key`); SSO and
        // credential_process would need the network or a prompt, so they count as "no session".
        let credentials = match plan.base {
            Base::StaticKeys { ref profile } => Some(static_keys(&set, profile)?),
            Base::Delegated { ref profile } => stored_key(&store, profile)?,
        };
        return Ok(credentials.map(|credentials| Session {
            credentials,
            profile: Some(t.profile),
            region,
            origin: Origin::Profile,
            sts_endpoint: endpoint,
        }));
    }
    let account = session_cache::account(&plan.profile, plan.role_arn(), plan.mfa_serial());
    Ok(
        session_cache::lookup(&store, &account, crate::time::now(), 0, ui)?.map(|hit| Session {
            credentials: hit.credentials,
            profile: Some(t.profile),
            region: region.or(hit.region),
            origin: Origin::Cache,
            sts_endpoint: endpoint,
        }),
    )
}

/// Variables to set in a child's environment for this session.
pub fn session_env(s: &Session) -> Vec<(String, Zeroizing<String>)> {
    let c = &s.credentials;
    let mut v = vec![
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            Zeroizing::new(c.access_key_id.clone()),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_string(),
            c.secret_access_key.clone(),
        ),
    ];
    if let Some(t) = &c.session_token {
        v.push(("AWS_SESSION_TOKEN".to_string(), t.clone()));
    }
    if let Some(e) = c.expiration {
        v.push((
            "AWS_CREDENTIAL_EXPIRATION".to_string(),
            Zeroizing::new(crate::time::rfc3339(e)),
        ));
    }
    if let Some(r) = &s.region {
        v.push(("AWS_REGION".to_string(), Zeroizing::new(r.clone())));
        v.push(("AWS_DEFAULT_REGION".to_string(), Zeroizing::new(r.clone())));
    }
    if let Some(p) = &s.profile {
        v.push((MARKER.to_string(), Zeroizing::new(p.clone())));
    }
    v
}

/// Variables to remove from a child's environment: the profile selectors (the credentials
/// are explicit now) and whatever an outer session set that this one does not replace.
pub fn session_unset(s: &Session) -> Vec<&'static str> {
    let mut v = UNSET_VARS.to_vec();
    if s.credentials.session_token.is_none() {
        v.push("AWS_SESSION_TOKEN");
    }
    if s.credentials.expiration.is_none() {
        v.push("AWS_CREDENTIAL_EXPIRATION");
    }
    if s.profile.is_none() {
        v.push(MARKER);
    }
    v
}

/// GetCallerIdentity with the session's credentials.
pub fn caller_identity(s: &Session) -> Result<Identity> {
    let rt = io_runtime()?;
    let region = s.region.clone().unwrap_or_else(|| "us-east-1".to_string());
    rt.block_on(async {
        let client = sts_client(&s.credentials, &region, s.sts_endpoint.as_deref());
        let out = client
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| sts_error("GetCallerIdentity", e))?;
        Ok(Identity {
            account: out.account().unwrap_or_default().to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
            user_id: out.user_id().unwrap_or_default().to_string(),
        })
    })
}

fn io_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Opens the secret store only if the plan might need it (a delegated base may have a key
/// stored by `aws add-key`); long-term keys in the files need no store at all.
fn lazy_store(ctx: &Ctx, ui: &Ui) -> Option<SecretStore> {
    match SecretStore::open(&ctx.cfg, &ctx.dirs, ui) {
        Ok(s) => Some(s),
        Err(e) => {
            ui.debug(format!("secret store unavailable: {e:#}"));
            None
        }
    }
}

fn static_keys(set: &aws_config::profile::ProfileSet, name: &str) -> Result<Credentials> {
    let p = set
        .get_profile(name)
        .with_context(|| format!("profile {name:?} vanished"))?;
    Ok(Credentials {
        access_key_id: p.get("aws_access_key_id").unwrap_or_default().to_string(),
        secret_access_key: Zeroizing::new(
            p.get("aws_secret_access_key")
                .unwrap_or_default()
                .to_string(),
        ),
        session_token: p
            .get("aws_session_token")
            .map(|t| Zeroizing::new(t.to_string())),
        expiration: None,
    })
}

fn stored_key(store: &SecretStore, profile: &str) -> Result<Option<Credentials>> {
    let Some(text) = store.get(&Account::AwsKey(profile).to_string())? else {
        return Ok(None);
    };
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Key {
        access_key_id: String,
        secret_access_key: String,
    }
    let mut k: Key = serde_json::from_str(&text).map_err(|_| {
        anyhow!(
            "the stored key of profile {profile:?} is unreadable: store it again with \
             `nixstore-auth aws add-key --profile {profile}`"
        )
    })?;
    Ok(Some(Credentials {
        access_key_id: k.access_key_id.clone(),
        secret_access_key: Zeroizing::new(std::mem::take(&mut k.secret_access_key)),
        session_token: None,
        expiration: None,
    }))
}

/// The first credentials of the chain.
fn base_credentials(
    set: &aws_config::profile::ProfileSet,
    plan: &Plan,
    store: &Option<SecretStore>,
    region: Option<&str>,
    ui: &Ui,
) -> Result<Credentials> {
    match &plan.base {
        Base::StaticKeys { profile } => static_keys(set, profile),
        Base::Delegated { profile } => {
            if let Some(store) = store
                && let Some(k) = stored_key(store, profile)?
            {
                ui.debug(format!("using the stored key of profile {profile:?}"));
                return Ok(k);
            }
            ui.debug(format!(
                "profile {profile:?} has no keys: asking aws-config (SSO, credential_process, web identity)"
            ));
            let rt = io_runtime()?;
            rt.block_on(delegated(profile, region))
        }
    }
}

async fn delegated(profile: &str, region: Option<&str>) -> Result<Credentials> {
    use aws_credential_types::provider::ProvideCredentials;
    let conf = aws_config::provider_config::ProviderConfig::default()
        .with_region(region.map(|r| aws_types::region::Region::new(r.to_string())));
    let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
        .configure(&conf)
        .profile_name(profile)
        .build();
    let c = provider.provide_credentials().await.map_err(|e| {
        anyhow!(
            "profile {profile:?} gave no credentials: {}. Add keys (`nixstore-auth aws add-key \
             --profile {profile}`), run `aws sso login --profile {profile}`, or fix its \
             credential_process",
            DisplayErrorContext(&e)
        )
    })?;
    Ok(Credentials {
        access_key_id: c.access_key_id().to_string(),
        secret_access_key: Zeroizing::new(c.secret_access_key().to_string()),
        session_token: c.session_token().map(|t| Zeroizing::new(t.to_string())),
        expiration: c.expiry().map(crate::time::epoch),
    })
}

fn sts_client(creds: &Credentials, region: &str, endpoint: Option<&str>) -> aws_sdk_sts::Client {
    let provider = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.to_string(),
        creds.session_token.as_ref().map(|t| t.to_string()),
        None,
        "nixstore-auth",
    );
    let mut b = aws_sdk_sts::Config::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(region.to_string()))
        .credentials_provider(provider);
    if let Some(e) = endpoint {
        b = b.endpoint_url(e);
    }
    aws_sdk_sts::Client::from_conf(b.build())
}

enum StsFailure {
    /// STS refused the MFA code (wrong, reused, or out of time).
    MfaRefused(String),
    Other(anyhow::Error),
}

fn sts_error<E>(op: &str, e: aws_sdk_sts::error::SdkError<E>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match e.code() {
        Some(code) => anyhow!(
            "STS {op} failed: {code}: {}",
            e.message().unwrap_or("no message")
        ),
        None => {
            use aws_sdk_sts::error::SdkError;
            // Only a short reason: the SDK's full error text quotes the request (MFA code
            // included).
            let why = match &e {
                SdkError::TimeoutError(_) => "timed out",
                SdkError::DispatchFailure(d) if d.is_timeout() => "timed out",
                SdkError::DispatchFailure(d) if d.is_io() => "cannot connect",
                SdkError::DispatchFailure(_) => "the request could not be sent",
                SdkError::ResponseError(_) => "the answer was unreadable",
                _ => "failed",
            };
            anyhow!(
                "STS {op} failed: {why}. Check the network and the STS endpoint \
                 (AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL or the profile's endpoint_url)"
            )
        }
    }
}

fn classify<E>(op: &str, e: aws_sdk_sts::error::SdkError<E>, sent_code: bool) -> StsFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let msg = e
        .message()
        .unwrap_or_default()
        .trim_end_matches('.')
        .to_string();
    let lower = msg.to_ascii_lowercase();
    if sent_code
        && e.code() == Some("AccessDenied")
        && (lower.contains("multifactor") || lower.contains("mfa"))
    {
        return StsFailure::MfaRefused(msg);
    }
    StsFailure::Other(sts_error(op, e))
}

fn convert(c: Option<&aws_sdk_sts::types::Credentials>, op: &str) -> Result<Credentials> {
    let c = c.with_context(|| format!("STS {op} returned no credentials"))?;
    Ok(Credentials {
        access_key_id: c.access_key_id().to_string(),
        secret_access_key: Zeroizing::new(c.secret_access_key().to_string()),
        session_token: Some(Zeroizing::new(c.session_token().to_string())),
        expiration: Some(c.expiration().secs()),
    })
}

/// The STS calls of a plan: GetSessionToken with MFA, or the AssumeRole hops (the MFA code
/// goes to the last hop that names the device).
async fn run_sts(
    plan: &Plan,
    base: &Credentials,
    code: Option<&str>,
    duration: Option<u32>,
    region: &str,
    endpoint: Option<&str>,
    ui: &Ui,
) -> std::result::Result<Credentials, StsFailure> {
    if let Some(serial) = &plan.session_token_mfa {
        ui.debug(format!(
            "GetSessionToken for profile {:?} with MFA device {serial}",
            plan.profile
        ));
        let client = sts_client(base, region, endpoint);
        let out = client
            .get_session_token()
            .serial_number(serial)
            .set_token_code(code.map(str::to_string))
            .set_duration_seconds(duration.or(plan.duration_seconds).map(|d| d as i32))
            .send()
            .await
            .map_err(|e| classify("GetSessionToken", e, code.is_some()))?;
        return convert(out.credentials(), "GetSessionToken").map_err(StsFailure::Other);
    }
    let mfa_hop = plan.hops.iter().rposition(|h| h.mfa_serial.is_some());
    let mut current = base.clone();
    for (i, hop) in plan.hops.iter().enumerate() {
        let last = i + 1 == plan.hops.len();
        let session_name = hop
            .session_name
            .clone()
            .unwrap_or_else(|| format!("nixstore-auth-{}", crate::time::now()));
        let dur = if last {
            duration.or(hop.duration_seconds).or(plan.duration_seconds)
        } else {
            hop.duration_seconds
        };
        ui.debug(format!(
            "AssumeRole {} (profile {:?}, as {})",
            hop.role_arn, hop.profile, current.access_key_id
        ));
        let client = sts_client(&current, region, endpoint);
        let mut call = client
            .assume_role()
            .role_arn(&hop.role_arn)
            .role_session_name(session_name)
            .set_external_id(hop.external_id.clone())
            .set_duration_seconds(dur.map(|d| d as i32));
        let with_code = mfa_hop == Some(i);
        if with_code {
            call = call
                .set_serial_number(hop.mfa_serial.clone())
                .set_token_code(code.map(str::to_string));
        }
        let out = call
            .send()
            .await
            .map_err(|e| classify("AssumeRole", e, with_code))?;
        current = convert(out.credentials(), "AssumeRole").map_err(StsFailure::Other)?;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lists_and_unsets() {
        let s = Session {
            credentials: Credentials {
                access_key_id: "AKIA".into(),
                secret_access_key: Zeroizing::new("sec".into()),
                session_token: None,
                expiration: None,
            },
            profile: Some("work".into()),
            region: Some("eu-west-1".into()),
            origin: Origin::Profile,
            sts_endpoint: None,
        };
        let names: Vec<_> = session_env(&s).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_REGION",
                "AWS_DEFAULT_REGION",
                MARKER
            ]
        );
        let unset = session_unset(&s);
        assert!(unset.contains(&"AWS_SESSION_TOKEN"));
        assert!(unset.contains(&"AWS_PROFILE"));
        assert!(!format!("{s:?}").contains("sec\""));
        assert_eq!(crate::time::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(crate::time::parse_rfc3339("1970-01-01T00:01:00Z"), Some(60));
    }
}
