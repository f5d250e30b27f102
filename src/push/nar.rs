//! One path's NAR, ready to upload: written from the store's files (any user can read the
//! store; `nix-store --dump` where that fails), hashed on the way (its SHA-256 and size must be what Nix recorded, or nothing is
//! uploaded), compressed (zstd, xz or none) and hashed again, into memory up to a few MiB and
//! beyond that into an unlinked 0600 file in the cache's private spool directory, so that the
//! upload knows its length (S3 needs it) and can be retried without exporting again, and a
//! killed run leaves nothing behind.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::narinfo::{NarFile, PathInfo, nar_key};
use crate::aws::session::EnvDelta;
use crate::s3_params::Compression;

/// Above this, the compressed NAR goes to a file rather than memory.
const IN_MEMORY: usize = 8 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;

/// How NARs are compressed (the cache URL's `compression`, `compression-level`,
/// `parallel-compression`).
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    pub compression: Compression,
    pub level: Option<i32>,
    pub parallel: bool,
}

/// The compressed bytes: in memory, or in an unlinked file.
pub enum Body {
    Memory(bytes::Bytes),
    File(std::sync::Arc<File>, u64),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
            Body::File(_, n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes `[offset, offset + max)`, for streaming it (again, on a retry).
    pub fn read_at(&self, offset: u64, max: usize) -> std::io::Result<bytes::Bytes> {
        match self {
            Body::Memory(b) => {
                let start = (offset as usize).min(b.len());
                let end = (start + max).min(b.len());
                Ok(b.slice(start..end))
            }
            Body::File(f, len) => {
                let n = (len.saturating_sub(offset) as usize).min(max);
                let mut buf = vec![0u8; n];
                f.read_exact_at(&mut buf, offset)?;
                Ok(bytes::Bytes::from(buf))
            }
        }
    }
}

/// A NAR ready to go: its narinfo file part and its bytes.
pub struct Prepared {
    pub file: NarFile,
    pub body: Body,
}

/// Memory first, an unlinked file in `dir` once it grows; hashes and counts what it is given.
struct Spill<'a> {
    dir: &'a Path,
    mem: Vec<u8>,
    file: Option<File>,
    hash: Sha256,
    size: u64,
}

impl Write for Spill<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hash.update(buf);
        self.size += buf.len() as u64;
        if self.file.is_none() && self.mem.len() + buf.len() > IN_MEMORY {
            let mut f = unlinked_file(self.dir)?;
            f.write_all(&self.mem)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => f.write_all(buf)?,
            None => self.mem.extend_from_slice(buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A new 0600 file in `dir`, unlinked at once: it lives as long as its descriptor.
fn unlinked_file(dir: &Path) -> std::io::Result<File> {
    let name = dir.join(format!(
        ".nar-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&name)?;
    std::fs::remove_file(&name)?;
    Ok(f)
}

/// The compressor around `out`.
fn encoder<'a, W: Write + 'a>(codec: Codec, out: W) -> Result<Box<dyn Finish<W> + 'a>> {
    Ok(match codec.compression {
        Compression::None => Box::new(Plain(out)),
        Compression::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(out, codec.level.unwrap_or(3))
                .context("cannot start zstd")?;
            if codec.parallel {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                // Without zstd's threading compiled in this fails: one thread then.
                let _ = e.multithread(threads as u32);
            }
            Box::new(e)
        }
        Compression::Xz => {
            let level = codec.level.unwrap_or(6).clamp(0, 9) as u32;
            let stream = if codec.parallel {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                liblzma::stream::MtStreamBuilder::new()
                    .preset(level)
                    .threads(threads as u32)
                    .check(liblzma::stream::Check::Crc64)
                    .encoder()
            } else {
                liblzma::stream::Stream::new_easy_encoder(level, liblzma::stream::Check::Crc64)
            }
            .context("cannot start xz")?;
            Box::new(liblzma::write::XzEncoder::new_stream(out, stream))
        }
    })
}

/// A compressor that can be finished, giving its writer back.
trait Finish<W>: Write {
    fn finish_box(self: Box<Self>) -> std::io::Result<W>;
}

struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> Finish<W> for Plain<W> {
    fn finish_box(self: Box<Self>) -> std::io::Result<W> {
        Ok(self.0)
    }
}

impl<W: Write> Finish<W> for zstd::stream::write::Encoder<'_, W> {
    fn finish_box(self: Box<Self>) -> std::io::Result<W> {
        (*self).finish()
    }
}

impl<W: Write> Finish<W> for liblzma::write::XzEncoder<W> {
    fn finish_box(self: Box<Self>) -> std::io::Result<W> {
        (*self).finish()
    }
}

/// The NAR's bytes on their way: hashed and counted (the NAR as Nix records it), then into
/// the compressor.
struct NarSink<'a> {
    hash: Sha256,
    size: u64,
    enc: Box<dyn Finish<Spill<'a>> + 'a>,
}

impl Write for NarSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hash.update(buf);
        self.size += buf.len() as u64;
        self.enc.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Exports, checks and compresses `info`'s NAR; `stop` ends the export. The NAR is written
/// in-process from the store's files (a process per path costs more than a small path's
/// upload); if that fails or does not give the hash Nix recorded (a store not at its logical
/// path, a file we cannot read), `nix-store --dump` makes it instead.
pub fn prepare(
    info: &PathInfo,
    codec: Codec,
    tmp: &Path,
    env: Option<&EnvDelta>,
    stop: &AtomicBool,
) -> Result<Prepared> {
    match export(info, codec, tmp, stop, |sink| {
        dump(Path::new(info.path.as_str()), sink, stop)
    }) {
        Ok(p) => Ok(p),
        Err(_) if stop.load(Ordering::SeqCst) => bail!("stopped"),
        Err(_) => export(info, codec, tmp, stop, |sink| {
            nix_store_dump(info, env, sink, stop)
        }),
    }
}

/// Writes a NAR with `write` into hashing and compression, and checks it against Nix's record.
fn export(
    info: &PathInfo,
    codec: Codec,
    tmp: &Path,
    stop: &AtomicBool,
    write: impl FnOnce(&mut NarSink) -> Result<()>,
) -> Result<Prepared> {
    let spill = Spill {
        dir: tmp,
        mem: Vec::new(),
        file: None,
        hash: Sha256::new(),
        size: 0,
    };
    let mut sink = NarSink {
        hash: Sha256::new(),
        size: 0,
        enc: encoder(codec, spill)?,
    };
    write(&mut sink)?;
    if stop.load(Ordering::SeqCst) {
        bail!("stopped");
    }
    let NarSink { hash, size, enc } = sink;
    let spill = enc.finish_box().context("compressing the NAR")?;
    let got: [u8; 32] = hash.finalize().into();
    if got != info.nar_hash || size != info.nar_size {
        bail!(
            "the NAR of {} is not what Nix recorded (sha256 {} and {} bytes, Nix says {} and {}): the store path may be corrupt; `nix store verify {}` checks it",
            info.path,
            super::narinfo::sha256_field(&got),
            size,
            super::narinfo::sha256_field(&info.nar_hash),
            info.nar_size,
            info.path
        );
    }
    let file_hash: [u8; 32] = spill.hash.finalize().into();
    let body = match spill.file {
        Some(f) => Body::File(std::sync::Arc::new(f), spill.size),
        None => Body::Memory(bytes::Bytes::from(spill.mem)),
    };
    Ok(Prepared {
        file: NarFile {
            url: nar_key(info, codec.compression),
            compression: codec.compression,
            file_hash,
            file_size: spill.size,
        },
        body,
    })
}

/// A NAR string: its length (u64, little endian), the bytes, zeros to a multiple of 8.
fn nar_str(out: &mut impl Write, s: &[u8]) -> std::io::Result<()> {
    out.write_all(&(s.len() as u64).to_le_bytes())?;
    out.write_all(s)?;
    out.write_all(&[0u8; 8][..(8 - s.len() % 8) % 8])
}

/// The NAR of `path` (Nix's archive format: `nix-archive-1`, then the tree with directory
/// entries sorted by name, the executable bit of regular files, symlink targets).
pub fn dump(path: &Path, out: &mut impl Write, stop: &AtomicBool) -> Result<()> {
    nar_str(out, b"nix-archive-1")?;
    dump_node(path, out, stop).with_context(|| format!("reading {}", path.display()))
}

fn dump_node(path: &Path, out: &mut impl Write, stop: &AtomicBool) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    if stop.load(Ordering::SeqCst) {
        bail!("stopped");
    }
    let meta = std::fs::symlink_metadata(path)?;
    nar_str(out, b"(")?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        nar_str(out, b"type")?;
        nar_str(out, b"symlink")?;
        nar_str(out, b"target")?;
        nar_str(out, std::fs::read_link(path)?.as_os_str().as_bytes())?;
    } else if ft.is_file() {
        nar_str(out, b"type")?;
        nar_str(out, b"regular")?;
        if meta.permissions().mode() & 0o100 != 0 {
            nar_str(out, b"executable")?;
            nar_str(out, b"")?;
        }
        nar_str(out, b"contents")?;
        let len = meta.len();
        out.write_all(&len.to_le_bytes())?;
        let mut f = File::open(path)?;
        let mut buf = vec![0u8; CHUNK.min(len as usize).max(1)];
        let mut left = len;
        while left > 0 {
            if stop.load(Ordering::SeqCst) {
                bail!("stopped");
            }
            let want = (left as usize).min(buf.len());
            f.read_exact(&mut buf[..want])?;
            out.write_all(&buf[..want])?;
            left -= want as u64;
        }
        out.write_all(&[0u8; 8][..((8 - len % 8) % 8) as usize])?;
    } else if ft.is_dir() {
        nar_str(out, b"type")?;
        nar_str(out, b"directory")?;
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            nar_str(out, b"entry")?;
            nar_str(out, b"(")?;
            nar_str(out, b"name")?;
            nar_str(out, name.as_bytes())?;
            nar_str(out, b"node")?;
            dump_node(&path.join(&name), out, stop)?;
            nar_str(out, b")")?;
        }
    } else {
        bail!("{} is not a file, directory or symlink", path.display());
    }
    nar_str(out, b")")?;
    Ok(())
}

/// The NAR from `nix-store --dump` (killed when `stop` is set).
fn nix_store_dump(
    info: &PathInfo,
    env: Option<&EnvDelta>,
    sink: &mut NarSink,
    stop: &AtomicBool,
) -> Result<()> {
    let mut cmd = super::command("nix-store", env);
    cmd.arg("--dump")
        .arg(info.path.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().context("cannot run nix-store --dump")?;
    let kill = |child: &mut std::process::Child| {
        // SAFETY: kill(2) on the process group of a child we started.
        unsafe {
            libc::kill(-(child.id() as i32), libc::SIGKILL);
        }
        let _ = child.wait();
    };
    let mut stdout = child
        .stdout
        .take()
        .context("nix-store --dump has no output")?;
    let mut stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let mut buf = vec![0u8; CHUNK];
    let read = loop {
        if stop.load(Ordering::SeqCst) {
            kill(&mut child);
            bail!("stopped");
        }
        let n = match stdout.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        };
        if let Err(e) = sink.write_all(&buf[..n]) {
            break Err(e);
        }
    };
    if let Err(e) = read {
        kill(&mut child);
        return Err(e).context("exporting the NAR");
    }
    let status = child.wait().context("waiting for nix-store --dump")?;
    let text = errors.join().unwrap_or_default();
    if !status.success() {
        bail!("nix-store --dump {} failed: {}", info.path, text.trim());
    }
    Ok(())
}

/// `text` compressed with `c` (narinfos with `narinfo-compression`).
pub fn compress_small(text: &[u8], c: Compression) -> Result<Vec<u8>> {
    let mut enc = encoder(
        Codec {
            compression: c,
            level: None,
            parallel: false,
        },
        Vec::new(),
    )?;
    enc.write_all(text)?;
    Ok(enc.finish_box()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_spill_to_an_unlinked_file_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spill {
            dir: dir.path(),
            mem: Vec::new(),
            file: None,
            hash: Sha256::new(),
            size: 0,
        };
        let data: Vec<u8> = (0..IN_MEMORY + 1000).map(|i| (i % 251) as u8).collect();
        s.write_all(&data).unwrap();
        assert!(s.file.is_some());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let body = Body::File(std::sync::Arc::new(s.file.take().unwrap()), s.size);
        assert_eq!(body.len(), data.len() as u64);
        assert_eq!(&body.read_at(5, 10).unwrap()[..], &data[5..15]);
        let tail = body.read_at(data.len() as u64 - 3, 10).unwrap();
        assert_eq!(&tail[..], &data[data.len() - 3..]);
    }

    #[test]
    fn nars_are_nix_s_format() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("b"), b"hello").unwrap();
        std::fs::write(root.join("a"), b"").unwrap();
        std::fs::set_permissions(root.join("a"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("b", root.join("c")).unwrap();
        let mut nar = Vec::new();
        dump(&root, &mut nar, &AtomicBool::new(false)).unwrap();
        // Every string is padded to 8 bytes; entries come sorted: a (executable, empty), b, c.
        assert_eq!(nar.len() % 8, 0);
        let text: Vec<u8> = nar
            .iter()
            .copied()
            .filter(|b| b.is_ascii_graphic())
            .collect();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.starts_with(
                "nix-archive-1(typedirectoryentry(nameanode(typeregularexecutablecontents))"
            ),
            "{text}"
        );
        assert!(
            text.contains("entry(namebnode(typeregularcontentshello))"),
            "{text}"
        );
        assert!(text.ends_with("namecnode(typesymlinktargetb)))"), "{text}");
        // When nix-store is at hand, the NAR is byte for byte its `--dump`.
        if let Ok(out) = std::process::Command::new("nix-store")
            .arg("--dump")
            .arg(&root)
            .output()
            && out.status.success()
        {
            assert_eq!(out.stdout, nar);
        }
    }

    #[test]
    fn compressors_round_trip() {
        let text = b"StorePath: /nix/store/x\n".repeat(100);
        let z = compress_small(&text, Compression::Zstd).unwrap();
        assert_eq!(zstd::decode_all(&z[..]).unwrap(), text);
        let x = compress_small(&text, Compression::Xz).unwrap();
        let mut out = Vec::new();
        liblzma::read::XzDecoder::new(&x[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, text);
        assert_eq!(compress_small(&text, Compression::None).unwrap(), text);
        assert!(z.len() < text.len() && x.len() < text.len());
    }
}
