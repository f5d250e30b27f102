//! AWS sessions: profiles, MFA, STS, and the session cache.

use zeroize::Zeroizing;

/// A set of AWS credentials. `Debug` never shows the secret parts.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
    /// Seconds since the Unix epoch; `None` for long-term keys.
    pub expiration: Option<i64>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expiration", &self.expiration)
            .finish()
    }
}

mod decide;
pub mod environment;
mod keys;
pub mod mfa;
mod outlook;
pub mod profile;
mod request;
pub mod session;
pub mod session_cache;
mod setup;
mod sts;
