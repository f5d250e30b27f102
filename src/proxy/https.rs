//! The HTTPS cache kind's credential: a token from the keyring (or handed over by `exec`) or
//! from a token command, presented as Basic or Bearer, behind the same surface as the clouds'
//! ([`crate::cloud::ObjectAuth`]): the proxy asks it to authorise a request, tells it when the
//! cache refused one, and asks where it stands. An HTTPS cache presigns nothing: a NAR the cache
//! sends elsewhere arrives as its own redirect (`https_rules::redirect`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use url::Url;

use super::https_rules;
use crate::cloud::{AuthError, AuthResult, Authorized, BoxFuture, ObjectAuth, State};
use crate::nix::https_route::Auth;
use crate::secret::Token;
use crate::token_command::CommandToken;

/// Where the token comes from.
pub enum TokenSource {
    /// A public cache: no header.
    None,
    /// A fixed token (the keyring's, or the one `exec` handed over); only a person replaces it.
    Fixed(Token),
    /// A command run when needed (`token_command.rs`).
    Command(Arc<CommandToken>),
}

/// One HTTPS cache's credential.
pub struct Https {
    cache: String,
    /// The cache's URL, ending in `/` so that keys join below it.
    base: Url,
    auth: Auth,
    login: String,
    source: TokenSource,
    /// Set when the cache refused a credential only a person can replace: why.
    refused: Mutex<Option<String>>,
}

impl Https {
    pub fn new(cache: &str, url: &Url, auth: Auth, login: &str, source: TokenSource) -> Https {
        let mut base = url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Https {
            cache: cache.to_string(),
            base,
            auth,
            login: login.to_string(),
            source,
            refused: Mutex::new(None),
        }
    }

    /// The URL of `key` below the cache (keys are never URL-encoded by the caller).
    pub fn url_of(&self, key: &str) -> AuthResult<Url> {
        self.base
            .join(key.trim_start_matches('/'))
            .map_err(|e| AuthError::Refused(format!("invalid key: {e}")))
    }

    /// The cache's base URL (its origin decides which redirects keep the credential).
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn fix(&self) -> String {
        match self.source {
            TokenSource::Command(_) => format!(
                "fix what the token command needs (run it yourself), or `nixstore-auth use {} --token-command ...`",
                self.cache
            ),
            _ => format!("nixstore-auth secret set {} --token-stdin", self.cache),
        }
    }
}

impl ObjectAuth for Https {
    fn describe(&self) -> String {
        let what = match &self.source {
            TokenSource::None => "no token".to_string(),
            TokenSource::Fixed(_) => "a stored token".to_string(),
            TokenSource::Command(c) => format!("the token command {:?}", c.command().program()),
        };
        format!("{} auth with {what}", self.auth.as_str())
    }

    fn authorize<'a>(
        &'a self,
        method: Method,
        key: &'a str,
    ) -> BoxFuture<'a, AuthResult<Authorized>> {
        Box::pin(async move {
            let mut req = Authorized::new(method, self.url_of(key)?);
            let (token, generation) = match &self.source {
                TokenSource::None => return Ok(req),
                TokenSource::Fixed(t) => (t.clone(), 0),
                TokenSource::Command(c) => {
                    let c = c.clone();
                    let now = crate::time::now();
                    // The command blocks (up to its timeout): off the proxy's threads.
                    tokio::task::spawn_blocking(move || c.get(now))
                        .await
                        .map_err(|e| AuthError::Transient(format!("token command: {e}")))?
                        .map_err(|e| AuthError::NeedsPerson {
                            why: format!("{e:#}"),
                            fix: self.fix(),
                        })?
                }
            };
            let value = https_rules::authorization(self.auth, &self.login, &token)
                .map_err(|e| AuthError::Refused(e.to_string()))?;
            req.headers.insert(reqwest::header::AUTHORIZATION, value);
            req.generation = generation;
            Ok(req)
        })
    }

    fn presign_get<'a>(
        &'a self,
        _key: &'a str,
        _ttl: Duration,
    ) -> BoxFuture<'a, AuthResult<Option<Url>>> {
        Box::pin(async { Ok(None) })
    }

    fn state(&self) -> State {
        if let Some(why) = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return State::NeedsPerson {
                why,
                fix: self.fix(),
            };
        }
        match &self.source {
            TokenSource::Command(_) => State::Renews { until: None },
            _ => State::Valid { until: None },
        }
    }

    fn refused(&self, request: &Authorized) -> bool {
        match &self.source {
            TokenSource::Command(c) => {
                c.refused(request.generation);
                true
            }
            _ => {
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some("the cache refused the stored token".into());
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_command::TokenCommand;

    fn token(s: &str) -> Token {
        Token::new(zeroize::Zeroizing::new(s.into())).unwrap()
    }

    #[tokio::test]
    async fn requests_get_the_header_and_a_refusal_renews_a_command_once() {
        let url = Url::parse("https://cache.example.org/sub").unwrap();
        let fixed = Https::new("c", &url, Auth::Bearer, "", TokenSource::Fixed(token("T1")));
        let r = fixed
            .authorize(Method::GET, "nix-cache-info")
            .await
            .unwrap();
        assert_eq!(
            r.url.as_str(),
            "https://cache.example.org/sub/nix-cache-info"
        );
        assert_eq!(r.headers["authorization"], "Bearer T1");
        assert!(!format!("{r:?}").contains("T1"));
        assert_eq!(fixed.state(), State::Valid { until: None });
        // A fixed token refused: only a person helps.
        assert!(!fixed.refused(&r));
        assert!(
            matches!(fixed.state(), State::NeedsPerson { fix, .. } if fix.contains("secret set c"))
        );

        let public = Https::new("p", &url, Auth::Basic, "x", TokenSource::None);
        let r = public.authorize(Method::HEAD, "a.narinfo").await.unwrap();
        assert!(r.headers.is_empty());

        // A command: each refusal of the latest token runs it once more.
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("n");
        let cmd = TokenCommand::parse(&format!(
            "sh -c 'n=$(cat {0} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {0}; echo tok$n'",
            count.display()
        ))
        .unwrap();
        let c = Arc::new(CommandToken::new(cmd, 300));
        let https = Https::new(
            "c",
            &url,
            Auth::Basic,
            "me",
            TokenSource::Command(c.clone()),
        );
        let a = https.authorize(Method::GET, "x").await.unwrap();
        let b = https.authorize(Method::GET, "y").await.unwrap();
        assert_eq!(c.runs(), 1);
        assert!(https.refused(&a) && https.refused(&b));
        let d = https.authorize(Method::GET, "z").await.unwrap();
        assert_eq!(c.runs(), 2);
        // Basic me:tok2
        assert_eq!(d.headers["authorization"], "Basic bWU6dG9rMg==");
        assert_eq!(https.state(), State::Renews { until: None });
        assert!(
            https
                .presign_get("x", Duration::from_secs(1))
                .await
                .unwrap()
                .is_none()
        );
    }
}
