//! Uploads to a Blob container: Put Blob for small objects, Put Block + Put Block List above a
//! threshold (a block blob is committed whole, so a reader never sees half a NAR).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::Method;

use super::{Blob, error_code};
use crate::cloud::{AuthError, AuthResult};

/// Objects up to this size go up in one Put Blob (the service takes up to 5000 MiB; smaller
/// keeps a failed upload cheap to retry).
pub const DEFAULT_THRESHOLD: usize = 64 * 1024 * 1024;
/// The block size above the threshold.
pub const DEFAULT_BLOCK: usize = 16 * 1024 * 1024;

/// A block ID: base64 of a fixed-width counter (all IDs of one blob must have one length).
pub fn block_id(n: usize) -> String {
    STANDARD.encode(format!("block-{n:08}"))
}

/// The Put Block List body committing `ids` in order.
pub fn block_list(ids: &[String]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for id in ids {
        xml.push_str("<Latest>");
        xml.push_str(id);
        xml.push_str("</Latest>");
    }
    xml.push_str("</BlockList>");
    xml
}

fn classify(what: &str, status: reqwest::StatusCode, body: &str) -> AuthError {
    let msg = format!(
        "{what} answered {status} ({})",
        error_code(body).unwrap_or("no error code")
    );
    if status.is_server_error() || status.as_u16() == 429 {
        AuthError::Transient(msg)
    } else {
        AuthError::Refused(msg)
    }
}

impl Blob {
    async fn send(
        &self,
        what: &str,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(String, String)],
        body: Bytes,
    ) -> AuthResult<()> {
        let mut url = self.container.url(key);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut all = headers.to_vec();
        all.push(("content-length".into(), body.len().to_string()));
        let req = self.authorize_url(method, url, &all).await?;
        let resp = req
            .build(self.http())
            .body(body)
            .send()
            .await
            .map_err(|e| AuthError::Transient(format!("{what}: {}", e.without_url())))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(classify(what, status, &text))
    }

    /// Put Blob: the whole object at once.
    pub async fn put_blob(&self, key: &str, body: Bytes, content_type: &str) -> AuthResult<()> {
        let headers = [
            ("x-ms-blob-type".to_string(), "BlockBlob".to_string()),
            ("content-type".to_string(), content_type.to_string()),
        ];
        self.send("Put Blob", Method::PUT, key, &[], &headers, body)
            .await
    }

    /// Put Block: one uncommitted block.
    pub async fn put_block(&self, key: &str, id: &str, body: Bytes) -> AuthResult<()> {
        self.send(
            "Put Block",
            Method::PUT,
            key,
            &[("comp", "block"), ("blockid", id)],
            &[],
            body,
        )
        .await
    }

    /// Put Block List: commits `ids` as the blob's content.
    pub async fn put_block_list(
        &self,
        key: &str,
        ids: &[String],
        content_type: &str,
    ) -> AuthResult<()> {
        let headers = [
            (
                "x-ms-blob-content-type".to_string(),
                content_type.to_string(),
            ),
            ("content-type".to_string(), "application/xml".to_string()),
        ];
        let body = Bytes::from(block_list(ids));
        self.send(
            "Put Block List",
            Method::PUT,
            key,
            &[("comp", "blocklist")],
            &headers,
            body,
        )
        .await
    }

    /// Uploads `body`: Put Blob up to `threshold` bytes, blocks of `block` bytes above it.
    /// Returns the number of blocks (0 for a single Put Blob).
    pub async fn upload(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
        threshold: usize,
        block: usize,
    ) -> AuthResult<usize> {
        if body.len() <= threshold {
            self.put_blob(key, body, content_type).await?;
            return Ok(0);
        }
        let block = block.max(1);
        let mut ids = Vec::new();
        let mut offset = 0;
        while offset < body.len() {
            let end = (offset + block).min(body.len());
            let id = block_id(ids.len());
            self.put_block(key, &id, body.slice(offset..end)).await?;
            ids.push(id);
            offset = end;
        }
        self.put_block_list(key, &ids, content_type).await?;
        Ok(ids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_have_one_length_and_the_list_keeps_order() {
        let ids: Vec<String> = (0..3).chain([99_999_999]).map(block_id).collect();
        assert!(ids.iter().all(|i| i.len() == ids[0].len()));
        assert_eq!(STANDARD.decode(&ids[1]).unwrap(), b"block-00000001");
        assert_eq!(
            block_list(&ids[..2]),
            format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList><Latest>{}</Latest><Latest>{}</Latest></BlockList>",
                ids[0], ids[1]
            )
        );
    }
}
