//! What a binary cache holds for a store path, as Nix writes it: the narinfo text, the
//! fingerprint Nix signs (`1;STOREPATH;NARHASH;NARSIZE;REFS`), the ed25519 signature with the
//! cache's key, and Nix's base-32 hash notation.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use zeroize::Zeroizing;

use super::StorePath;
use crate::s3_params::Compression;

/// Nix's base-32 alphabet (no e, o, u, t).
const NIX32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// `bytes` in Nix's base 32 (as in `sha256:...` of narinfos and store path hashes).
pub fn nix32(bytes: &[u8]) -> String {
    let len = (bytes.len() * 8).div_ceil(5);
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        let lo = bytes[i] >> j;
        let hi = if i + 1 < bytes.len() && j > 3 {
            bytes[i + 1] << (8 - j)
        } else {
            0
        };
        out.push(NIX32[((lo | hi) & 0x1f) as usize] as char);
    }
    out
}

/// A SHA-256 as Nix prints it in narinfos: `sha256:NIX32`.
pub fn sha256_field(digest: &[u8; 32]) -> String {
    format!("sha256:{}", nix32(digest))
}

/// A SHA-256 given by Nix in any of its notations (`sha256-BASE64` (SRI), `sha256:NIX32`,
/// `sha256:HEX`), as bytes.
pub fn parse_sha256(s: &str) -> Result<[u8; 32]> {
    let bytes = if let Some(b64) = s.strip_prefix("sha256-") {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .with_context(|| format!("not a SHA-256: {s:?}"))?
    } else if let Some(rest) = s.strip_prefix("sha256:") {
        if rest.len() == 64 {
            hex::decode(rest).with_context(|| format!("not a SHA-256: {s:?}"))?
        } else {
            from_nix32(rest).with_context(|| format!("not a SHA-256: {s:?}"))?
        }
    } else {
        bail!("not a SHA-256: {s:?}");
    };
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("not a SHA-256 (wrong length): {s:?}"))
}

fn from_nix32(s: &str) -> Result<Vec<u8>> {
    let size = s.len() * 5 / 8;
    let mut out = vec![0u8; size];
    for (n, c) in s.bytes().rev().enumerate() {
        let digit = NIX32
            .iter()
            .position(|&d| d == c)
            .context("a character outside Nix's base 32")? as u16;
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        if i < size {
            out[i] |= (digit << j) as u8;
        }
        if i + 1 < size {
            out[i + 1] |= (digit >> (8 - j)) as u8;
        } else if (digit >> (8 - j)) != 0 && j > 3 {
            bail!("not a base-32 hash of this length");
        }
    }
    Ok(out)
}

/// What Nix records about a valid path (`nix path-info --json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    pub path: StorePath,
    pub nar_hash: [u8; 32],
    pub nar_size: u64,
    /// Full store paths, sorted as Nix sorts them.
    pub references: Vec<StorePath>,
    pub deriver: Option<StorePath>,
    pub ca: Option<String>,
    /// Signatures the path has already (e.g. from the cache it came from).
    pub signatures: Vec<String>,
}

impl PathInfo {
    /// What Nix signs: `1;STOREPATH;sha256:NARHASH;NARSIZE;REF,REF`.
    pub fn fingerprint(&self) -> String {
        let refs: Vec<&str> = self.references.iter().map(StorePath::as_str).collect();
        format!(
            "1;{};{};{};{}",
            self.path,
            sha256_field(&self.nar_hash),
            self.nar_size,
            refs.join(",")
        )
    }
}

/// A narinfo's file part: where the (compressed) NAR is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarFile {
    /// The key below the cache: `nar/HASH.nar.zst`.
    pub url: String,
    pub compression: Compression,
    pub file_hash: [u8; 32],
    pub file_size: u64,
}

/// The NAR's key in the cache: named by its NAR hash, which Nix records before any byte is
/// read, so that the narinfo can name it whatever the compressor makes of it.
pub fn nar_key(info: &PathInfo, c: Compression) -> String {
    format!("nar/{}.nar{}", nix32(&info.nar_hash), c.extension())
}

/// The narinfo text, with `sigs` (existing signatures first, then ours).
pub fn render(info: &PathInfo, file: &NarFile, sigs: &[String]) -> String {
    let mut s = format!(
        "StorePath: {}\nURL: {}\nCompression: {}\nFileHash: {}\nFileSize: {}\nNarHash: {}\nNarSize: {}\nReferences: {}\n",
        info.path,
        file.url,
        file.compression.name(),
        sha256_field(&file.file_hash),
        file.file_size,
        sha256_field(&info.nar_hash),
        info.nar_size,
        info.references
            .iter()
            .map(StorePath::base_name)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(d) = &info.deriver {
        s.push_str(&format!("Deriver: {}\n", d.base_name()));
    }
    for sig in sigs {
        s.push_str(&format!("Sig: {sig}\n"));
    }
    if let Some(ca) = &info.ca {
        s.push_str(&format!("CA: {ca}\n"));
    }
    s
}

/// A cache's signing key, loaded from Nix's `NAME:BASE64` secret key file.
pub struct Signer {
    pub name: String,
    key: SigningKey,
}

impl Signer {
    /// Reads and checks a key file (never shows the key).
    pub fn from_file(path: &std::path::Path) -> Result<Signer> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the secret key file {}", path.display()))?,
        );
        Signer::from_text(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn from_text(text: &str) -> Result<Signer> {
        let info = super::signing::check(text)?;
        let (_, b64) = text
            .trim()
            .split_once(':')
            .context("not a Nix secret key")?;
        let bytes = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| anyhow::anyhow!("not a Nix secret key"))?,
        );
        let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
            bytes[..32]
                .try_into()
                .map_err(|_| anyhow::anyhow!("not a Nix secret key"))?,
        );
        let key = SigningKey::from_bytes(&seed);
        // Nix's secret key carries its public half: a key whose halves disagree is corrupt.
        if key.verifying_key().as_bytes() != &bytes[32..] {
            bail!("not a Nix secret key: its public half does not belong to it");
        }
        Ok(Signer {
            name: info.name,
            key,
        })
    }

    /// `NAME:BASE64` of the signature over `info`'s fingerprint.
    pub fn sign(&self, info: &PathInfo) -> String {
        let sig = self.key.sign(info.fingerprint().as_bytes());
        format!(
            "{}:{}",
            self.name,
            base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix32_matches_nix() {
        // `nix-hash --type sha256 --to-base32` of the empty string's SHA-256, and of "probe".
        let empty = hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
            .unwrap();
        assert_eq!(
            nix32(&empty),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
        let probe = hex::decode("ba9c736f19e7f60b7f6764adb0b7908c0a2b394e09b6c09863528c7f2bc86095")
            .unwrap();
        let text = nix32(&probe);
        assert_eq!(text, "15b0r0mpz32jcfcc1dh99qwjn2lcj2vv1bb4cxzhpxp735pp775s");
        assert_eq!(from_nix32(&text).unwrap(), probe);
        let arr: [u8; 32] = probe.clone().try_into().unwrap();
        assert_eq!(parse_sha256(&format!("sha256:{text}")).unwrap(), arr);
        let sri = format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(&probe)
        );
        assert_eq!(parse_sha256(&sri).unwrap(), arr);
        assert_eq!(
            parse_sha256("sha256:ba9c736f19e7f60b7f6764adb0b7908c0a2b394e09b6c09863528c7f2bc86095")
                .unwrap(),
            arr
        );
        assert!(parse_sha256("md5:abc").is_err());
        assert!(parse_sha256("sha256:eeee").is_err());
    }

    fn info() -> PathInfo {
        PathInfo {
            path: StorePath::parse("/nix/store/kqy16a12drcglkq5xmp424qvmzhm82ac-a").unwrap(),
            nar_hash: [7; 32],
            nar_size: 208,
            references: vec![
                StorePath::parse("/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-b").unwrap(),
                StorePath::parse("/nix/store/kqy16a12drcglkq5xmp424qvmzhm82ac-a").unwrap(),
            ],
            deriver: None,
            ca: None,
            signatures: vec![],
        }
    }

    #[test]
    fn the_fingerprint_and_narinfo_are_nix_s() {
        let i = info();
        assert_eq!(
            i.fingerprint(),
            format!(
                "1;/nix/store/kqy16a12drcglkq5xmp424qvmzhm82ac-a;sha256:{};208;/nix/store/0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-b,/nix/store/kqy16a12drcglkq5xmp424qvmzhm82ac-a",
                nix32(&[7; 32])
            )
        );
        let file = NarFile {
            url: nar_key(&i, Compression::Zstd),
            compression: Compression::Zstd,
            file_hash: [1; 32],
            file_size: 99,
        };
        assert!(file.url.starts_with("nar/") && file.url.ends_with(".nar.zst"));
        let text = render(&i, &file, &["k:sig".into()]);
        assert!(text.contains("\nReferences: 0mdqa9w1p6cmli6976v4wi0sw9r4p5pr-b kqy16a12drcglkq5xmp424qvmzhm82ac-a\n"), "{text}");
        assert!(
            text.contains("\nCompression: zstd\nFileHash: sha256:"),
            "{text}"
        );
        assert!(text.ends_with("Sig: k:sig\n"), "{text}");
    }

    #[test]
    fn signatures_verify_with_the_public_key() {
        use ed25519_dalek::{Signature, Verifier, VerifyingKey};
        let seed = [42u8; 32];
        let sk = SigningKey::from_bytes(&seed);
        let mut full = seed.to_vec();
        full.extend_from_slice(sk.verifying_key().as_bytes());
        let text = format!(
            "test-1:{}",
            base64::engine::general_purpose::STANDARD.encode(&full)
        );
        let signer = Signer::from_text(&text).unwrap();
        let sig = signer.sign(&info());
        let (name, b64) = sig.split_once(':').unwrap();
        assert_eq!(name, "test-1");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let sig = Signature::from_slice(&bytes).unwrap();
        VerifyingKey::from_bytes(sk.verifying_key().as_bytes())
            .unwrap()
            .verify(info().fingerprint().as_bytes(), &sig)
            .unwrap();
        // A key whose public half is another key's is refused.
        full[40] ^= 1;
        let bad = format!(
            "test-1:{}",
            base64::engine::general_purpose::STANDARD.encode(&full)
        );
        assert!(Signer::from_text(&bad).is_err());
    }
}
