//! Entra ID tokens for Blob storage, from the sources Azure tools use, in this order: the
//! environment (a client secret, or workload identity: `AZURE_CLIENT_ID` + `AZURE_TENANT_ID` +
//! `AZURE_FEDERATED_TOKEN_FILE`), the Azure CLI's login, managed identity.
//!
//! The OAuth flows are azure_identity's (`ClientSecretCredential`, `WorkloadIdentityCredential`,
//! `ManagedIdentityCredential`; they honour `AZURE_AUTHORITY_HOST`, which must be https). The
//! CLI route is ours: azure_identity runs `az` through `/bin/sh -c`, and we run no shell.
//! Tokens are held in our [`TokenCache`] (renewed mid-life by `cloud::renew_due`), which also
//! remembers when a person is needed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use zeroize::Zeroizing;

use crate::cloud::{AuthError, AuthResult, Held, TokenCache};

/// The scope of a token for Blob storage.
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// Which source gives the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ClientSecret,
    WorkloadIdentity,
    AzureCli,
    ManagedIdentity,
}

/// What the choice depends on (presence only; values are read when building).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    pub client_id: bool,
    pub tenant_id: bool,
    pub client_secret: bool,
    pub federated_token_file: bool,
    /// `az` is on PATH.
    pub az_on_path: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `program` found in one of PATH's directories.
pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// The environment the Entra sources read, as a snapshot: the proxy gathers it once from
/// the user's session, tests build it directly (no process-wide variables).
#[derive(Clone, Default)]
pub struct EntraEnv {
    pub client_id: Option<String>,
    pub tenant_id: Option<String>,
    pub client_secret: Option<Zeroizing<String>>,
    pub federated_token_file: Option<PathBuf>,
    /// `AZURE_AUTHORITY_HOST` (https only; azure_identity refuses anything else).
    pub authority_host: Option<String>,
    /// The `az` program, if on PATH.
    pub az: Option<PathBuf>,
}

impl std::fmt::Debug for EntraEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraEnv")
            .field("client_id", &self.client_id)
            .field("tenant_id", &self.tenant_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "(set)"),
            )
            .field("federated_token_file", &self.federated_token_file)
            .field("authority_host", &self.authority_host)
            .field("az", &self.az)
            .finish()
    }
}

impl EntraEnv {
    /// From this process's environment (`AZURE_*`, PATH).
    pub fn gather() -> EntraEnv {
        EntraEnv {
            client_id: env("AZURE_CLIENT_ID"),
            tenant_id: env("AZURE_TENANT_ID"),
            client_secret: env("AZURE_CLIENT_SECRET").map(Zeroizing::new),
            federated_token_file: env("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            authority_host: env("AZURE_AUTHORITY_HOST"),
            az: on_path("az"),
        }
    }

    pub fn facts(&self) -> Facts {
        Facts {
            client_id: self.client_id.is_some(),
            tenant_id: self.tenant_id.is_some(),
            client_secret: self.client_secret.is_some(),
            federated_token_file: self.federated_token_file.is_some(),
            az_on_path: self.az.is_some(),
        }
    }
}

/// The order Azure tools use: a complete environment first (secret before federated token,
/// as azure-identity's EnvironmentCredential precedes WorkloadIdentityCredential), then the
/// CLI's login, then managed identity (the last resort: it only answers on Azure).
pub fn choose(f: &Facts) -> Route {
    match f {
        Facts {
            client_id: true,
            tenant_id: true,
            client_secret: true,
            ..
        } => Route::ClientSecret,
        Facts {
            client_id: true,
            tenant_id: true,
            federated_token_file: true,
            ..
        } => Route::WorkloadIdentity,
        Facts {
            az_on_path: true, ..
        } => Route::AzureCli,
        _ => Route::ManagedIdentity,
    }
}

impl Route {
    pub fn describe(self) -> &'static str {
        match self {
            Route::ClientSecret => "Entra ID client secret (AZURE_CLIENT_SECRET)",
            Route::WorkloadIdentity => "Entra ID workload identity (AZURE_FEDERATED_TOKEN_FILE)",
            Route::AzureCli => "the Azure CLI's login (az account get-access-token)",
            Route::ManagedIdentity => "managed identity",
        }
    }

    /// The command (or step) that fixes this source once it needs a person.
    pub fn fix(self) -> &'static str {
        match self {
            Route::ClientSecret => {
                "az ad app credential reset --id $AZURE_CLIENT_ID (then set AZURE_CLIENT_SECRET)"
            }
            Route::WorkloadIdentity => {
                "check that the app registration trusts the token in AZURE_FEDERATED_TOKEN_FILE (federated credential subject and audience)"
            }
            Route::AzureCli | Route::ManagedIdentity => "az login",
        }
    }
}

enum Inner {
    Sdk(Arc<dyn TokenCredential>),
    Cli {
        program: PathBuf,
        tenant: Option<String>,
    },
}

/// An Entra token source with its cache.
pub struct Entra {
    pub route: Route,
    inner: Inner,
    cache: TokenCache,
}

fn sdk_error(route: Route, e: azure_core::Error) -> AuthError {
    use azure_core::error::ErrorKind;
    let transient = match e.kind() {
        ErrorKind::HttpResponse { status, .. } => {
            let s = u16::from(*status);
            s >= 500 || s == 429 || s == 408
        }
        ErrorKind::Io => true,
        _ => false,
    };
    // The first line only: azure_identity appends a troubleshooting link.
    let msg = e.to_string().lines().next().unwrap_or_default().to_string();
    if transient {
        AuthError::Transient(format!("{}: {msg}", route.describe()))
    } else {
        AuthError::NeedsPerson {
            why: format!("{} was refused: {msg}", route.describe()),
            fix: route.fix().into(),
        }
    }
}

fn options(http: &reqwest::Client, env: &EntraEnv) -> ClientOptions {
    let cloud = env.authority_host.as_ref().map(|host| {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = host.clone();
        Arc::new(CloudConfiguration::from(custom))
    });
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
        cloud,
        ..Default::default()
    }
}

impl Entra {
    /// The source `choose` picks from `env`; `http` carries the requests (its trust roots are
    /// the ones used).
    pub fn new(env: &EntraEnv, http: &reqwest::Client) -> AuthResult<Entra> {
        Entra::build(choose(&env.facts()), env, http)
    }

    /// A given route (tests; a configuration that names one).
    pub fn build(route: Route, env: &EntraEnv, http: &reqwest::Client) -> AuthResult<Entra> {
        let refused =
            |e: azure_core::Error| AuthError::Refused(format!("{}: {e}", route.describe()));
        let inner = match route {
            Route::ClientSecret => {
                let tenant = env.tenant_id.clone().unwrap_or_default();
                let client = env.client_id.clone().unwrap_or_default();
                let secret = Secret::new(
                    env.client_secret
                        .as_ref()
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                );
                let opts = ClientSecretCredentialOptions {
                    client_options: options(http, env),
                };
                Inner::Sdk(
                    ClientSecretCredential::new(&tenant, client, secret, Some(opts))
                        .map_err(refused)?,
                )
            }
            Route::WorkloadIdentity => {
                let opts = WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: options(http, env),
                    },
                    client_id: env.client_id.clone(),
                    tenant_id: env.tenant_id.clone(),
                    token_file_path: env.federated_token_file.clone(),
                };
                Inner::Sdk(WorkloadIdentityCredential::new(Some(opts)).map_err(refused)?)
            }
            Route::ManagedIdentity => {
                let opts = ManagedIdentityCredentialOptions {
                    user_assigned_id: env.client_id.clone().map(UserAssignedId::ClientId),
                    client_options: options(http, env),
                };
                Inner::Sdk(ManagedIdentityCredential::new(Some(opts)).map_err(refused)?)
            }
            Route::AzureCli => Inner::Cli {
                program: env.az.clone().unwrap_or_else(|| PathBuf::from("az")),
                tenant: env.tenant_id.clone(),
            },
        };
        Ok(Entra {
            route,
            inner,
            cache: TokenCache::new(),
        })
    }

    /// A token for Blob storage, renewed when due.
    pub async fn token(&self) -> AuthResult<Held> {
        self.cache.get(crate::time::now, || self.fetch()).await
    }

    /// Drops the cached token (after the service refused it).
    pub async fn forget(&self) {
        self.cache.forget().await
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    async fn fetch(&self) -> AuthResult<Held> {
        let issued = crate::time::now();
        match &self.inner {
            Inner::Sdk(cred) => {
                let t = cred
                    .get_token(&[STORAGE_SCOPE], None)
                    .await
                    .map_err(|e| sdk_error(self.route, e))?;
                Ok(Held {
                    secret: Arc::new(Zeroizing::new(t.token.secret().to_string())),
                    issued,
                    expires: t.expires_on.unix_timestamp(),
                })
            }
            Inner::Cli { program, tenant } => cli_token(program, tenant.as_deref(), issued).await,
        }
    }
}

/// `az account get-access-token`, run directly (no shell), its JSON parsed.
async fn cli_token(
    program: &std::path::Path,
    tenant: Option<&str>,
    issued: i64,
) -> AuthResult<Held> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args([
        "account",
        "get-access-token",
        "--output",
        "json",
        "--scope",
        STORAGE_SCOPE,
    ]);
    if let Some(t) = tenant {
        cmd.args(["--tenant", t]);
    }
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| {
            AuthError::Transient("az account get-access-token did not answer in 60 s".into())
        })?
        .map_err(|e| AuthError::NeedsPerson {
            why: format!("cannot run {}: {e}", program.display()),
            fix: "install the Azure CLI, then az login".into(),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        return Err(AuthError::NeedsPerson {
            why: format!("az account get-access-token failed: {}", first.trim()),
            fix: Route::AzureCli.fix().into(),
        });
    }
    parse_cli_token(&out.stdout, issued)
}

/// The CLI's answer: `accessToken` and `expires_on` (epoch seconds, az 2.54+; older versions
/// only print `expiresOn` in local time, which we do not guess at).
pub fn parse_cli_token(stdout: &[u8], issued: i64) -> AuthResult<Held> {
    let bad = |why: &str| AuthError::Transient(format!("az account get-access-token: {why}"));
    let v: serde_json::Value = serde_json::from_slice(stdout).map_err(|_| bad("not JSON"))?;
    let token = v
        .get("accessToken")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("no accessToken"))?;
    let expires = match v.get("expires_on") {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad("no expires_on (Azure CLI 2.54 or later needed)"))?;
    Ok(Held {
        secret: Arc::new(Zeroizing::new(token.to_string())),
        issued,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_order_table() {
        let f = |client_id, tenant_id, client_secret, federated_token_file, az_on_path| Facts {
            client_id,
            tenant_id,
            client_secret,
            federated_token_file,
            az_on_path,
        };
        let cases = [
            (f(true, true, true, true, true), Route::ClientSecret),
            (f(true, true, false, true, true), Route::WorkloadIdentity),
            (f(true, true, false, true, false), Route::WorkloadIdentity),
            // Incomplete environments fall through to the CLI, then managed identity.
            (f(true, false, true, true, true), Route::AzureCli),
            (f(false, true, false, true, true), Route::AzureCli),
            (f(true, true, false, false, true), Route::AzureCli),
            (f(true, false, false, false, false), Route::ManagedIdentity),
            (f(false, false, false, false, false), Route::ManagedIdentity),
        ];
        for (facts, want) in cases {
            assert_eq!(choose(&facts), want, "{facts:?}");
        }
    }

    #[test]
    fn cli_answers() {
        let t = parse_cli_token(br#"{"accessToken":"tok","expiresOn":"2030-01-01 00:00:00.000000","expires_on":1893456000,"tokenType":"Bearer"}"#, 5).unwrap();
        assert_eq!(
            (t.secret.as_str(), t.issued, t.expires),
            ("tok", 5, 1_893_456_000)
        );
        assert_eq!(
            parse_cli_token(br#"{"accessToken":"t","expires_on":"1893456000"}"#, 0)
                .unwrap()
                .expires,
            1_893_456_000
        );
        assert!(
            parse_cli_token(
                br#"{"accessToken":"t","expiresOn":"2030-01-01 00:00:00"}"#,
                0
            )
            .is_err()
        );
        assert!(parse_cli_token(b"Please run 'az login'", 0).is_err());
    }

    /// A stand-in `az` (a shell script, not the Azure CLI) proves the argv we pass and that no
    /// shell interprets it: the scope arrives as one argument.
    #[tokio::test]
    async fn cli_route_runs_az_without_a_shell() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let az = dir.path().join("az");
        let log = dir.path().join("argv");
        std::fs::write(
            &az,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > {}\n\
                 echo '{{\"accessToken\":\"cli-token\",\"expires_on\":4102444800}}'\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = Entra {
            route: Route::AzureCli,
            inner: Inner::Cli {
                program: az.clone(),
                tenant: Some("t; rm -rf /".into()),
            },
            cache: TokenCache::new(),
        };
        let t = e.token().await.unwrap();
        assert_eq!(t.secret.as_str(), "cli-token");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!(
                "account\nget-access-token\n--output\njson\n--scope\n{STORAGE_SCOPE}\n--tenant\nt; rm -rf /\n"
            )
        );
        // A failing az names `az login`.
        std::fs::write(
            &az,
            "#!/bin/sh\necho \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n",
        )
        .unwrap();
        let e = Entra {
            route: Route::AzureCli,
            inner: Inner::Cli {
                program: az,
                tenant: None,
            },
            cache: TokenCache::new(),
        };
        match e.token().await {
            Err(AuthError::NeedsPerson { why, fix }) => {
                assert!(why.contains("Please run 'az login'"), "{why}");
                assert_eq!(fix, "az login");
            }
            other => panic!("expected NeedsPerson, got {other:?}"),
        }
    }
}
