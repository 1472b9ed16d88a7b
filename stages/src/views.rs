//! Views of upstream outputs for a stage that runs the user's own code (a
//! `command`): the outputs it references are copied out of the object
//! store into the stage's private scratch folder, file by file, as a
//! reflink where the filesystem can (btrfs, XFS: no bytes are copied) and a
//! plain copy elsewhere. The command may read, change or delete its views:
//! the objects in the store are never the files it was given, so no script
//! can corrupt the cache through them. Views are made only for the outputs
//! a command references, and go with the scratch folder when it ends.

use std::path::{Path, PathBuf};

use crate::stage::{Inputs, StageError};

/// The environment variable that names input `input` (`extract.embeddings`
/// or `extract/embeddings` -> `TUNEFLOW_INPUT_EXTRACT_EMBEDDINGS`).
pub fn env_name(input: &str) -> String {
    let mut out = String::from("TUNEFLOW_INPUT_");
    for c in input.chars() {
        out.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        });
    }
    out
}

/// A path holding input `name`: the workspace file or folder for an
/// upstream `outs` entry, else a view made in `dir`.
pub fn materialize(name: &str, inputs: &Inputs, dir: &Path) -> Result<PathBuf, StageError> {
    let Some(src) = inputs.paths.get(name) else {
        return Err(StageError::Input {
            input: name.to_owned(),
            message: "was not resolved by the runner".into(),
        });
    };
    if !inputs.stored.contains(name) {
        return Ok(src.clone());
    }
    let dest = dir.join(safe_name(name));
    let io = |action, path: &Path, e| StageError::io(action, path, e);
    match inputs.trees.get(name) {
        Some(files) => {
            for (rel, object) in files {
                let to = dest.join(rel);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
                }
                clone_or_copy(object, &to).map_err(|e| io("copy", object, e))?;
            }
            std::fs::create_dir_all(&dest).map_err(|e| io("create", &dest, e))?;
        }
        None => {
            std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
            clone_or_copy(src, &dest).map_err(|e| io("copy", src, e))?;
        }
    }
    Ok(dest)
}

/// `a.b/c` -> `a.b_c`: one folder name per input.
fn safe_name(name: &str) -> String {
    name.replace('/', "_")
}

/// Copies `src` to a new file `dest`: a reflink (`FICLONE`) where the
/// filesystem shares extents copy-on-write, else a byte copy. The copy is
/// made writable: it belongs to the command.
pub fn clone_or_copy(src: &Path, dest: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !reflink(src, dest)? {
        std::fs::copy(src, dest)?;
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))
}

/// Tries `ioctl(FICLONE)`; `false` when the filesystem cannot.
#[expect(unsafe_code, reason = "ioctl(2) has no safe wrapper in std")]
fn reflink(src: &Path, dest: &Path) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    const FICLONE: libc::c_ulong = 0x4004_9409;
    let from = std::fs::File::open(src)?;
    let to = std::fs::File::create(dest)?;
    // SAFETY: both descriptors are open for the duration of the call.
    let rc = unsafe { libc::ioctl(to.as_raw_fd(), FICLONE as _, from.as_raw_fd()) };
    Ok(rc == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_copies_the_command_may_change_freely() {
        let dir = tempfile::tempdir().unwrap();
        let object = dir.path().join("object");
        std::fs::write(&object, b"cached bytes").unwrap();
        let mut inputs = Inputs::default();
        inputs.paths.insert("a.out".into(), object.clone());
        inputs.stored.insert("a.out".into());
        let view = materialize("a.out", &inputs, &dir.path().join("views")).unwrap();
        assert_eq!(std::fs::read(&view).unwrap(), b"cached bytes");
        std::fs::write(&view, b"scribbled").unwrap();
        std::fs::remove_file(&view).unwrap();
        assert_eq!(std::fs::read(&object).unwrap(), b"cached bytes");
        assert_eq!(
            env_name("extract.embeddings"),
            "TUNEFLOW_INPUT_EXTRACT_EMBEDDINGS"
        );
        assert_eq!(env_name("a/out-1.txt"), "TUNEFLOW_INPUT_A_OUT_1_TXT");
    }
}
