//! Shared Key authorisation of Blob service requests (the storage account key), and the
//! HMAC-SHA256 both Shared Key and SAS signatures use. Pure: string to sign in, header out.
//! Microsoft's Rust blob crate has no Shared Key; this follows the service's documented
//! string-to-sign ("Authorize with Shared Key", version 2015-02-21 and later), and Azurite
//! checks it for real in tests/clouds/.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::cloud::{AuthError, AuthResult};

/// A storage account key (the base64 text the portal shows, decoded).
#[derive(Clone)]
pub struct AccountKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountKey(..)")
    }
}

impl AccountKey {
    pub fn from_base64(text: &str) -> AuthResult<AccountKey> {
        let bytes = STANDARD.decode(text.trim().as_bytes()).map_err(|_| {
            AuthError::Refused(
                "the Azure account key is not base64 (copy it from the portal's Access keys)"
                    .into(),
            )
        })?;
        if bytes.len() < 16 {
            return Err(AuthError::Refused(
                "the Azure account key is too short".into(),
            ));
        }
        Ok(AccountKey(Zeroizing::new(bytes)))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// base64(HMAC-SHA256(key, message)): the signature of Shared Key and of every SAS.
pub fn hmac_b64(key: &[u8], message: &str) -> String {
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    STANDARD.encode(aws_lc_rs::hmac::sign(&k, message.as_bytes()).as_ref())
}

/// The standard headers Shared Key signs, in order (their values, "" when absent).
const SIGNED_STANDARD: [&str; 11] = [
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
];

/// The Shared Key string to sign for a request. `headers` are (name, value) as sent (any
/// case); `path` is the URL's path as sent (percent-encoded); `query` its decoded pairs.
pub fn string_to_sign(
    method: &str,
    headers: &[(String, String)],
    account: &str,
    path: &str,
    query: &[(String, String)],
) -> String {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut out = String::new();
    out.push_str(method);
    out.push('\n');
    for name in SIGNED_STANDARD {
        let mut v = get(name);
        // Since 2015-02-21 a zero length is signed as empty.
        if name == "content-length" && v == "0" {
            v.clear();
        }
        out.push_str(&v);
        out.push('\n');
    }
    let mut ms: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-ms-"))
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    ms.sort();
    for (k, v) in ms {
        out.push_str(&format!("{k}:{v}\n"));
    }
    out.push('/');
    out.push_str(account);
    out.push_str(path);
    let mut params: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in query {
        params
            .entry(k.to_ascii_lowercase())
            .or_default()
            .push(v.clone());
    }
    for (k, mut vs) in params {
        vs.sort();
        out.push_str(&format!("\n{k}:{}", vs.join(",")));
    }
    out
}

/// The `Authorization` header value for `string_to_sign`.
pub fn authorization(account: &str, key: &AccountKey, string_to_sign: &str) -> String {
    format!(
        "SharedKey {account}:{}",
        hmac_b64(key.bytes(), string_to_sign)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Azurite's well-known development account key (public, documented by Microsoft).
    pub const DEV_KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    #[test]
    fn hmac_known_answer() {
        // RFC 4231 test case 2.
        let mac = hmac_b64(b"Jefe", "what do ya want for nothing?");
        assert_eq!(
            hex::encode(STANDARD.decode(mac).unwrap()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn string_to_sign_layout() {
        let h = |k: &str, v: &str| (k.to_string(), v.to_string());
        let headers = [
            h("x-ms-version", "2021-08-06"),
            h("X-MS-Date", "Thu, 01 Feb 2024 10:00:00 GMT"),
            h("Content-Length", "0"),
            h("x-ms-blob-type", "BlockBlob"),
            h("Content-Type", "application/octet-stream"),
            h("Range", "bytes=0-99"),
        ];
        let query = [h("comp", "block"), h("blockid", "AAA="), h("COMP", "x")];
        let sts = string_to_sign(
            "PUT",
            &headers,
            "devstoreaccount1",
            "/devstoreaccount1/cache/nar/a%20b.nar",
            &query,
        );
        assert_eq!(
            sts,
            "PUT\n\n\n\n\napplication/octet-stream\n\n\n\n\n\nbytes=0-99\n\
             x-ms-blob-type:BlockBlob\nx-ms-date:Thu, 01 Feb 2024 10:00:00 GMT\nx-ms-version:2021-08-06\n\
             /devstoreaccount1/devstoreaccount1/cache/nar/a%20b.nar\nblockid:AAA=\ncomp:block,x"
        );
        // The signature is HMAC-SHA256 over exactly that string, keyed by the decoded key
        // (value computed with `openssl dgst -sha256 -mac HMAC -macopt hexkey:...`).
        let key = AccountKey::from_base64(DEV_KEY).unwrap();
        assert_eq!(
            authorization("devstoreaccount1", &key, "GET\n"),
            format!("SharedKey devstoreaccount1:{}", OPENSSL_GET)
        );
    }

    /// `printf 'GET\n' | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(echo DEV_KEY | base64 -d | xxd -p -c 256) -binary | base64`
    const OPENSSL_GET: &str = "/ZZsmidvu/o1IWuAI6fRY2fmdvnXEMtMILD8Y+sZWjA=";

    #[test]
    fn bad_keys_are_refused() {
        assert!(AccountKey::from_base64("not base64!").is_err());
        assert!(AccountKey::from_base64("c2hvcnQ=").is_err());
        assert!(format!("{:?}", AccountKey::from_base64(DEV_KEY).unwrap()) == "AccountKey(..)");
    }
}
