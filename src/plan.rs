//! A plan of file edits: computed from each file's current text under its lock, shown as a diff
//! (`--dry-run`) or applied atomically.

use anyhow::{Context, Result, bail};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

type EditFn<'a> = Box<dyn Fn(&str) -> Result<String> + 'a>;

/// One file to change: the edit runs on the text read under the lock, so concurrent runs that
/// edit the same file for different caches both land.
pub struct FileChange<'a> {
    pub path: PathBuf,
    /// Mode for a file we create.
    pub new_mode: u32,
    /// The file holds secrets: refuse group/world-readable files, mask passwords in diffs.
    pub secret: bool,
    edit: EditFn<'a>,
}

#[derive(Default)]
pub struct Plan<'a> {
    changes: Vec<FileChange<'a>>,
}

impl<'a> Plan<'a> {
    pub fn new() -> Self {
        Plan::default()
    }

    pub fn edit(
        &mut self,
        path: &Path,
        new_mode: u32,
        secret: bool,
        edit: impl Fn(&str) -> Result<String> + 'a,
    ) {
        self.changes.push(FileChange {
            path: path.to_path_buf(),
            new_mode,
            secret,
            edit: Box::new(edit),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The unified diff of every change, passwords masked. Touches nothing.
    pub fn preview(&self) -> Result<String> {
        let mut out = String::new();
        for c in &self.changes {
            let old = crate::fs::read_optional(&c.path)?.unwrap_or_default();
            let new = (c.edit)(&old).with_context(|| format!("in {}", c.path.display()))?;
            let (old, new) = if c.secret {
                (mask_passwords(&old), mask_passwords(&new))
            } else {
                (old, new)
            };
            out.push_str(&crate::fs::unified_diff(&c.path, &old, &new));
        }
        Ok(out)
    }

    /// Checks that every file can be written, before anything is: a symlinked or read-only
    /// nix.conf must fail the whole plan, not half of it.
    pub fn check(&self) -> Result<()> {
        for c in &self.changes {
            if let Some(why) = crate::fs::edit_blocker(&c.path) {
                bail!("{why}");
            }
            if c.secret {
                check_private(&c.path)?;
            }
        }
        Ok(())
    }

    /// Applies every change under the locks of all the files' directories: every new text is
    /// computed first, and nothing is written unless all of them succeed, so a malformed netrc
    /// cannot leave a nix.conf half-configured. Returns the files that changed.
    pub fn apply(&self) -> Result<Vec<PathBuf>> {
        self.check()?;
        // One lock per directory (a process must not lock the same directory twice), taken
        // in a fixed order so that concurrent runs cannot deadlock.
        let mut dirs: Vec<PathBuf> = self
            .changes
            .iter()
            .map(|c| {
                c.path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf()
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        let _locks = dirs
            .iter()
            .map(|d| crate::fs::lock_dir(d))
            .collect::<Result<Vec<_>>>()?;
        let mut writes = Vec::new();
        for c in &self.changes {
            let old = crate::fs::read_optional(&c.path)?;
            let old_text = old.as_deref().unwrap_or("");
            let new = (c.edit)(old_text).with_context(|| format!("in {}", c.path.display()))?;
            let unchanged = match &old {
                Some(_) => new == old_text,
                None => new.is_empty(),
            };
            if !unchanged {
                writes.push((c, new));
            }
        }
        let mut changed = Vec::new();
        for (c, new) in writes {
            crate::fs::atomic_write(&c.path, new.as_bytes(), c.new_mode)?;
            changed.push(c.path.clone());
        }
        Ok(changed)
    }
}

/// A token must not go into a file other users can read.
pub fn check_private(path: &Path) -> Result<()> {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{} is readable by other users (mode {mode:o}); refusing to write a token into it. Run `chmod 600 {}` first",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Replaces every netrc `password` value with asterisks, for diffs and messages.
pub fn mask_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut mask_next = false;
    for piece in text.split_inclusive(|c: char| c.is_whitespace()) {
        let word = piece.trim_end_matches(|c: char| c.is_whitespace());
        let tail = &piece[word.len()..];
        if word.is_empty() {
            out.push_str(piece);
            continue;
        }
        if mask_next {
            out.push_str("********");
            out.push_str(tail);
            mask_next = false;
        } else {
            out.push_str(piece);
            mask_next = word == "password";
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        let t = "machine a login x password s3cr3t\nmachine b\n  password  other\n";
        let m = mask_passwords(t);
        assert!(!m.contains("s3cr3t") && !m.contains("other"), "{m}");
        assert_eq!(
            m,
            "machine a login x password ********\nmachine b\n  password  ********\n"
        );
    }

    #[test]
    fn apply_writes_only_changes_and_preview_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.conf");
        std::fs::write(&a, "x = 1\n").unwrap();
        let mut plan = Plan::new();
        plan.edit(&a, 0o644, false, |t| Ok(format!("{t}y = 2\n")));
        let diff = plan.preview().unwrap();
        assert!(diff.contains("+y = 2"), "{diff}");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "x = 1\n");
        assert_eq!(plan.apply().unwrap(), vec![a.clone()]);
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "x = 1\ny = 2\n");
    }

    #[test]
    fn world_readable_secret_files_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let n = dir.path().join("netrc");
        std::fs::write(&n, "").unwrap();
        std::fs::set_permissions(&n, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut plan = Plan::new();
        plan.edit(&n, 0o600, true, |t| {
            Ok(format!("{t}machine a password b\n"))
        });
        let err = plan.apply().unwrap_err();
        assert!(format!("{err:#}").contains("chmod 600"));
        assert_eq!(std::fs::read_to_string(&n).unwrap(), "");
    }
}
