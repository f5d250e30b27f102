//! Short-lived private files for one launch (the netrc that carries keyring tokens to Nix):
//! 0600 in a 0700 directory under `$XDG_RUNTIME_DIR`, else a private temporary directory, and
//! deleted when dropped (every way out that can be caught).

use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::Dirs;

#[derive(Debug)]
pub struct EphemeralFile {
    path: PathBuf,
    /// A temporary directory we made for it, removed with it.
    own_dir: Option<PathBuf>,
}

impl EphemeralFile {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to a new private file named after `stem`.
    pub fn create(dirs: &Dirs, stem: &str, contents: &[u8]) -> Result<EphemeralFile> {
        let (dir, own_dir) = match &dirs.runtime {
            Some(rt) => {
                crate::fs::private_dir(rt)?;
                (rt.clone(), None)
            }
            None => {
                let base = std::env::temp_dir();
                let dir = base.join(format!("nixstore-auth-{:016x}", rand::random::<u64>()));
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                (dir.clone(), Some(dir))
            }
        };
        let path = dir.join(format!(
            "{stem}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let file = EphemeralFile { path, own_dir };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file.path)
            .with_context(|| format!("cannot create {}", file.path.display()))?;
        f.write_all(contents)
            .with_context(|| format!("cannot write {}", file.path.display()))?;
        Ok(file)
    }
}

use std::os::unix::fs::DirBuilderExt;

impl Drop for EphemeralFile {
    fn drop(&mut self) {
        // Overwrite before unlinking, so the token does not linger in a page of a tmpfs.
        if let Ok(meta) = std::fs::metadata(&self.path) {
            let _ = std::fs::write(&self.path, vec![0u8; meta.len() as usize]);
        }
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = &self.own_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_and_gone_after_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: tmp.path().join("c"),
            cache: tmp.path().join("k"),
            data: tmp.path().join("d"),
            state: tmp.path().join("s"),
            runtime: Some(tmp.path().join("run")),
        };
        let f = EphemeralFile::create(&dirs, "netrc", b"machine a password b\n").unwrap();
        let p = f.path().to_path_buf();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(tmp.path().join("run"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        drop(f);
        assert!(!p.exists());
        let dirs = Dirs {
            runtime: None,
            ..dirs
        };
        let f = EphemeralFile::create(&dirs, "netrc", b"x").unwrap();
        let dir = f.path().parent().unwrap().to_path_buf();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        drop(f);
        assert!(!dir.exists());
    }
}
