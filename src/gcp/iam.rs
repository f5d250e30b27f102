//! IAM Credentials' `signBlob`: how a credential without a private key (an impersonated
//! service account) signs a V4 URL. Written here rather than taken from google-cloud-auth's
//! `Signer`: that one sends signBlob to `https://iamcredentials.{universe}` only, which a test
//! cannot point at a loopback stand-in; this one goes to the IAM service the credential file's
//! impersonation URL names (the same service, in production).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use super::adc::Impersonation;
use crate::cloud::{AuthError, AuthResult};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignBlobResponse {
    signed_blob: String,
}

/// The signBlob URL for `imp`.
pub fn sign_blob_url(imp: &Impersonation) -> String {
    format!(
        "{}/v1/projects/-/serviceAccounts/{}:signBlob",
        imp.iam_base.trim_end_matches('/'),
        imp.email
    )
}

/// Signs `payload` as `imp.email` (RSA-SHA256 by Google's key for that account), authorised by
/// `bearer` (a token of the impersonated account, as Google's own libraries do).
pub async fn sign_blob(
    http: &reqwest::Client,
    imp: &Impersonation,
    bearer: &str,
    payload: &[u8],
) -> AuthResult<Vec<u8>> {
    let body = serde_json::json!({ "payload": STANDARD.encode(payload) });
    let resp = http
        .post(sign_blob_url(imp))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .map_err(|e| AuthError::Transient(format!("IAM signBlob for {}: {e}", imp.email)))?;
    let status = resp.status();
    if !status.is_success() {
        let msg = format!(
            "IAM signBlob for {} answered {status}: the account needs \
             roles/iam.serviceAccountTokenCreator on itself to sign URLs",
            imp.email
        );
        return Err(if status.is_server_error() || status.as_u16() == 429 {
            AuthError::Transient(msg)
        } else {
            AuthError::Refused(msg)
        });
    }
    let parsed: SignBlobResponse = resp
        .json()
        .await
        .map_err(|e| AuthError::Transient(format!("IAM signBlob answer: {e}")))?;
    STANDARD
        .decode(parsed.signed_blob.as_bytes())
        .map_err(|e| AuthError::Transient(format!("IAM signBlob answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_follows_the_impersonation_service() {
        let imp = Impersonation {
            email: "sa@p.iam.gserviceaccount.com".into(),
            iam_base: "http://127.0.0.1:9/".into(),
        };
        assert_eq!(
            sign_blob_url(&imp),
            "http://127.0.0.1:9/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:signBlob"
        );
    }
}
