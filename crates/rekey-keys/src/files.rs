//! Files only their owner may read, written so that a crash leaves either
//! the old file or the new one, never a torn one: a temporary file beside
//! the target (created mode 0600 by `tempfile`), written, flushed to disk,
//! renamed over the target, then the directory flushed so the rename
//! itself survives a power cut. The one writer of key files, backups and
//! the demo's credentials.

use std::io::Write;
use std::path::Path;
use tempfile::NamedTempFile;

/// A written temporary file beside its target, not yet in place: several
/// can be staged and then all moved into place (see [`Staged::persist`]).
#[derive(Debug)]
pub struct Staged(NamedTempFile);

/// Writes `bytes` to a new temporary file in `dir` (mode 0600), flushed to
/// disk.
pub fn stage(dir: &Path, bytes: &[u8]) -> std::io::Result<Staged> {
    let mut file = tempfile::Builder::new()
        .prefix(".rekey-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    Ok(Staged(file))
}

impl Staged {
    /// Moves the file to `path`, replacing what is there unless
    /// `keep_existing`, then flushes the directory. On error the
    /// temporary file is removed and `path` is untouched.
    pub fn persist(self, path: &Path, keep_existing: bool) -> std::io::Result<()> {
        let moved = if keep_existing {
            self.0.persist_noclobber(path)
        } else {
            self.0.persist(path)
        };
        moved.map_err(|e| e.error)?;
        sync_parent(path);
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically, mode 0600, replacing any file
/// there.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    stage(parent(path), bytes)?.persist(path, false)
}

/// Creates `dir` and its parents, the last with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes the directory holding `path`, so a rename into it is durable.
/// Best effort: not every file system lets a directory be opened.
fn sync_parent(path: &Path) {
    if let Ok(dir) = std::fs::File::open(parent(path)) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_replace_atomically_and_only_the_owner_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_staged_file_can_refuse_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, b"old").unwrap();
        let err = stage(dir.path(), b"new")
            .unwrap()
            .persist(&path, true)
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn private_directories_are_0700() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("a/keys");
        create_private_dir(&keys).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&keys).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }
}
