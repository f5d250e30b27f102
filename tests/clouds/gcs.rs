//! GCS: fake-gcs-server behind the checking front (Google's token, STS, IAM and metadata
//! stand-ins), one per process (plus a private one for the short-token test).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use nixstore_auth::cloud::{AuthError, ObjectAuth, State};
use nixstore_auth::gcp::{Bucket, Gcs, adc, token};
use reqwest::Method;
use serde_json::json;

use crate::support::{self, GcsBed};
use crate::{Test, ensure, get, plain_get, rand_suffix, rt, script, tamper, venv};

const BUCKET: &str = "nix-cache";
const SA_EMAIL: &str = "cache-writer@test-project.iam.gserviceaccount.com";
const STS_AUDIENCE: &str =
    "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/ci/providers/gh";
const SUBJECT_TOKEN: &str = "subject-token-from-the-ci-job";
const REFRESH: &str = "1//refresh-token-of-alice";
const REVOKED: &str = "1//refresh-token-revoked";

struct GcpBed {
    dir: tempfile::TempDir,
    bed: GcsBed,
    sa_key: PathBuf,
}

static GCP: OnceLock<Mutex<Option<Arc<GcpBed>>>> = OnceLock::new();

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

pub const TESTS: [(&str, Test); 6] = [
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

/// Stops the shared servers (statics are never dropped).
pub fn stop() {
    if let Some(m) = GCP.get() {
        drop(m.lock().map(|mut g| g.take()));
    }
}
