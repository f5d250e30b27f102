//! Azure: Azurite (HTTPS, `--oauth basic`) and the Entra ID stand-in, one of each per process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use libtest_mimic::Failed;
use nixstore_auth::azure::entra::{Entra, EntraEnv, Route};
use nixstore_auth::azure::sas::{self, GivenSas, SasGrant};
use nixstore_auth::azure::shared_key::AccountKey;
use nixstore_auth::azure::{Blob, Container, Credential};
use nixstore_auth::cloud::{AuthError, ObjectAuth, State};
use reqwest::Method;
use serde_json::json;

use crate::support::{self, Azurite, EntraStub, TestCa};
use crate::{Test, ensure, get, jwt, plain_get, rand_suffix, rt, script, tamper, venv};

const TENANT: &str = "72f988bf-0000-4000-8000-00000000cafe";
const WI_CLIENT: &str = "11111111-2222-4333-8444-555555555555";
const SECRET_CLIENT: &str = "99999999-2222-4333-8444-555555555555";
const CLIENT_SECRET: &str = "entra-client-secret-value";
const OIDC_ISS: &str = "https://token.actions.githubusercontent.com";
const OIDC_SUB: &str = "repo:example/cache:ref:refs/heads/main";
const CONTAINER: &str = "cache";

struct AzureBed {
    dir: tempfile::TempDir,
    ca: TestCa,
    azurite: Azurite,
    entra: EntraStub,
}

static AZURE: OnceLock<Mutex<Option<Arc<AzureBed>>>> = OnceLock::new();

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

pub const TESTS: [(&str, Test); 5] = [
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

/// Stops the shared servers (statics are never dropped).
pub fn stop() {
    if let Some(m) = AZURE.get() {
        drop(m.lock().map(|mut g| g.take()));
    }
}
