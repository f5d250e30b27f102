//! The uploader's HTTP: one connection pool per cache, shared by its upload threads, requests to the cache's base URL
//! (the proxy's `http://127.0.0.1:PORT/SECRET/NAME` for S3, the HTTPS cache itself with its
//! recorded credential), whatever the cache's kind. Bodies stream from memory or an unlinked
//! file with their length given, so a retry sends the same bytes again.

use anyhow::{Context, Result, bail};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use zeroize::Zeroizing;

use super::nar::Body;

/// Where uploads go, with what they need. Holds secrets (the proxy URL, a token): never
/// printed; [`Endpoint::redact`] cleans messages.
#[derive(Clone)]
pub struct Endpoint {
    /// The cache's base URL (the proxy's URL for S3).
    pub base: String,
    /// Basic auth (HTTPS caches).
    pub auth: Option<(String, Zeroizing<String>)>,
    /// An HTTPS cache (uploads need the server to take PUT) rather than S3 through the proxy.
    pub https: bool,
    /// Strings that must never show (the proxy URL), replaced in messages by `shown`.
    pub secrets: Vec<String>,
    pub shown: String,
    /// The proxy lease serving an HTTPS cache on the proxy route (the proxy adds its
    /// credential): held while any copy of the endpoint lives.
    pub hold: Option<std::sync::Arc<crate::proxy::Lease>>,
}

impl Endpoint {
    /// An upload to our proxy's `url` for a cache shown as `shown`: the proxy adds the
    /// credential, and the URL (it holds the proxy's secret) never shows. `hold` keeps the
    /// proxy's lease for as long as the endpoint lives.
    pub fn via_proxy(
        url: String,
        shown: String,
        https: bool,
        hold: Option<std::sync::Arc<crate::proxy::Lease>>,
    ) -> Endpoint {
        Endpoint {
            base: url.clone(),
            auth: None,
            https,
            secrets: vec![url],
            shown,
            hold,
        }
    }

    /// `text` with every secret replaced by the cache's public URL.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if !s.is_empty() {
                out = out.replace(s.as_str(), &self.shown);
            }
        }
        out
    }

    fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.base.trim_end_matches('/'))
    }
}

/// The HTTP client of one cache's uploads.
pub struct Conn {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

/// How an upload failed: the status (if the server answered) and why.
#[derive(Debug)]
pub struct PutError {
    pub status: Option<u16>,
    pub message: String,
}

impl Conn {
    /// One client with its own small runtime, shared by every upload thread of a cache
    /// (`Handle::block_on` from each): its pooled connections live on the runtime's threads.
    pub fn new() -> Result<Conn> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("nixstore-auth-upload-http")
            .enable_all()
            .build()
            .context("cannot start the HTTP client")?;
        // The client's timers need the runtime.
        let _in_rt = rt.enter();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("cannot start the HTTP client")?;
        drop(_in_rt);
        Ok(Conn { rt, client })
    }

    fn request(
        &self,
        ep: &Endpoint,
        method: reqwest::Method,
        key: &str,
    ) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, ep.url(key));
        if let Some((login, token)) = &ep.auth {
            req = req.basic_auth(login, Some(token.as_str()));
        }
        req
    }

    /// The status of `HEAD key` (2xx: there, 404: not).
    pub fn head(&self, ep: &Endpoint, key: &str) -> Result<u16> {
        let req = self.request(ep, reqwest::Method::HEAD, key);
        let resp = self
            .rt
            // send() starts its timer at once: inside the runtime.
            .block_on(async { req.send().await })
            .map_err(|e| anyhow::anyhow!("{}", ep.redact(&e.without_url().to_string())))?;
        Ok(resp.status().as_u16())
    }

    /// `PUT key` with `body` once; `stop` abandons it.
    pub fn put(
        &self,
        ep: &Endpoint,
        key: &str,
        body: &Body,
        content_type: &str,
        encoding: Option<&str>,
        stop: &AtomicBool,
    ) -> Result<(), PutError> {
        let len = body.len();
        let mut req = self
            .request(ep, reqwest::Method::PUT, key)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, len);
        if let Some(e) = encoding {
            req = req.header(reqwest::header::CONTENT_ENCODING, e);
        }
        // Small bodies as they are, big ones streamed from the file (reqwest wants 'static).
        let req = match body {
            Body::Memory(b) => req.body(b.clone()),
            Body::File(f, n) => req.body(reqwest::Body::wrap_stream(file_stream(f.clone(), *n))),
        };
        let fut = async {
            let send = req.send();
            tokio::pin!(send);
            loop {
                tokio::select! {
                    r = &mut send => break Some(r),
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {
                        if stop.load(Ordering::SeqCst) {
                            break None;
                        }
                    }
                }
            }
        };
        let resp = match self.rt.block_on(fut) {
            None => {
                return Err(PutError {
                    status: None,
                    message: "stopped".into(),
                });
            }
            Some(Err(e)) => {
                return Err(PutError {
                    status: None,
                    message: ep.redact(&e.without_url().to_string()),
                });
            }
            Some(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = self
            .rt
            .block_on(async { resp.text().await })
            .unwrap_or_default();
        let text: String = text.trim().chars().take(400).collect();
        Err(PutError {
            status: Some(status),
            message: ep.redact(&format!(
                "HTTP {status} for {key}{}{}",
                if text.is_empty() { "" } else { ": " },
                text
            )),
        })
    }

    /// `GET key`: `Some(body)` for 2xx, `None` for 404.
    pub fn get_small(&self, ep: &Endpoint, key: &str) -> Result<Option<String>> {
        let req = self.request(ep, reqwest::Method::GET, key);
        let (status, text) = self
            .rt
            .block_on(async {
                let r = req.send().await?;
                let s = r.status().as_u16();
                Ok::<_, reqwest::Error>((s, r.text().await?))
            })
            .map_err(|e| anyhow::anyhow!("{}", ep.redact(&e.without_url().to_string())))?;
        match status {
            200..=299 => Ok(Some(text)),
            404 => Ok(None),
            s => bail!("HTTP {s} for {key}"),
        }
    }
}

/// A file's bytes as a body stream, 1 MiB at a time.
fn file_stream(
    f: std::sync::Arc<std::fs::File>,
    len: u64,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let body = Body::File(f, len);
    futures_util::stream::unfold((body, 0u64), move |(body, off)| async move {
        if off >= len {
            return None;
        }
        match body.read_at(off, 1024 * 1024) {
            Ok(chunk) if chunk.is_empty() => None,
            Ok(chunk) => {
                let n = chunk.len() as u64;
                Some((Ok(chunk), (body, off + n)))
            }
            Err(e) => Some((Err(e), (body, len))),
        }
    })
}

/// What an upload's failure means for the user, by status (the message says what happened).
pub fn explain(e: &PutError, https: bool) -> String {
    let hint = match e.status {
        Some(401 | 403) => " (the cache refused the upload: the credential may not write)",
        Some(404 | 405 | 501) if https => {
            " (the server does not take uploads by HTTP PUT; an attic server speaks its own API: upload with `attic push`)"
        }
        _ => "",
    };
    format!("{}{hint}", e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_explained_and_secrets_redacted() {
        let ep = Endpoint {
            base: "http://127.0.0.1:1/SECRETSECRET/c".into(),
            auth: None,
            https: false,
            secrets: vec!["http://127.0.0.1:1/SECRETSECRET/c".into()],
            shown: "s3://bucket".into(),
            hold: None,
        };
        let msg = ep.redact("error sending request for 'http://127.0.0.1:1/SECRETSECRET/c/nar/x'");
        assert!(
            !msg.contains("SECRET") && msg.contains("s3://bucket/nar/x"),
            "{msg}"
        );
        let refused = PutError {
            status: Some(403),
            message: "HTTP 403 for x.narinfo: S3 refused the upload (AccessDenied)".into(),
        };
        assert!(explain(&refused, false).contains("may not write"));
        let attic = PutError {
            status: Some(405),
            message: "HTTP 405".into(),
        };
        assert!(explain(&attic, true).contains("attic push"));
        assert!(!explain(&attic, false).contains("attic push"));
    }
}
