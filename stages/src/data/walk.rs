//! Lists class folders (torchvision's ImageFolder layout) without leaving
//! the dataset folder.
//!
//! Symlinks (issue #11): a link to a *file* of the format is followed when
//! its target resolves inside the dataset folder, and refused otherwise
//! (a link to another file is ignored, like the file). A link to a
//! *folder* is never followed, wherever it points: it could leave the
//! folder, loop back into it (`c0/loop -> ..` listed 615 items instead of
//! 15), or list the same files twice. A broken link is refused too. The
//! dataset folder is hashed with its links recorded by target text, so a
//! file reached through a link that leaves the folder could change without
//! rerunning the stage; that is why such links are errors, not warnings.
//! With `skip`, a refused link is left out and counted.
//!
//! A class folder with no files of the format is an error (an incomplete
//! copy looks exactly like that); with `skip` it is left out and counted.

use std::path::{Path, PathBuf};

use super::error::{DataError, Skipped};
use super::sources::{Locator, SourceItem};

/// The dataset folder, resolved once: files read from it must resolve
/// inside it.
#[derive(Debug, Clone)]
pub struct DatasetRoot {
    /// As given (ids and messages are relative to it).
    pub path: PathBuf,
    /// With every link resolved.
    canonical: PathBuf,
}

/// What a symlink resolves to.
enum Target {
    /// A file: the resolved path.
    File(PathBuf),
    /// A folder: the link's own target text.
    Folder(PathBuf),
}

impl DatasetRoot {
    /// Resolves `path` (which may itself be a link).
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let canonical = path
            .canonicalize()
            .map_err(|e| DataError::io("open dataset folder", path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            canonical,
        })
    }

    /// Checks that the file `path`, if it exists, resolves inside the
    /// folder (it may be reached through links inside it).
    pub fn check_file(&self, path: &Path) -> Result<(), DataError> {
        match path.canonicalize() {
            Ok(resolved) if !resolved.starts_with(&self.canonical) => Err(DataError::file(
                path,
                format!(
                    "resolves outside the dataset folder (through a symlink), to `{}`",
                    resolved.display()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether `path` resolves to a place inside the folder.
    pub fn contains(&self, path: &Path) -> bool {
        path.canonicalize()
            .is_ok_and(|p| p.starts_with(&self.canonical))
    }

    /// Resolves the symlink `link`; a broken link is an error.
    fn resolve_link(&self, link: &Path) -> Result<Target, DataError> {
        let target = std::fs::read_link(link).map_err(|e| DataError::io("read link", link, e))?;
        let shown = target.display();
        let resolved = link.canonicalize().map_err(|e| {
            DataError::file(
                link,
                format!("symlink to `{shown}` is broken or loops ({e})"),
            )
        })?;
        if resolved.is_dir() {
            return Ok(Target::Folder(target));
        }
        Ok(Target::File(resolved))
    }

    /// Checks that the file `resolved` (reached through `link`) is inside
    /// the folder.
    fn check_inside(&self, link: &Path, resolved: &Path) -> Result<(), DataError> {
        if resolved.starts_with(&self.canonical) {
            return Ok(());
        }
        Err(DataError::file(
            link,
            format!(
                "symlink points outside the dataset folder, to `{}`; links may only point to files inside it",
                resolved.display()
            ),
        ))
    }
}

fn folder_link_error(link: &Path, target: &Path) -> DataError {
    DataError::file(
        link,
        format!(
            "symlink to the folder `{}` is not followed (folder links can leave the dataset folder or loop); move or copy the folder here instead",
            target.display()
        ),
    )
}

fn has_extension(path: &Path, exts: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The entries of `dir` with their types (links not followed), sorted.
fn entries(dir: &Path) -> Result<Vec<(PathBuf, std::fs::FileType)>, DataError> {
    let list = |e| DataError::io("list", dir, e);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list)? {
        let entry = entry.map_err(list)?;
        let kind = entry
            .file_type()
            .map_err(|e| DataError::io("stat", entry.path(), e))?;
        out.push((entry.path(), kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Records `err` as skipped, or returns it.
fn refuse(err: DataError, skip: bool, skipped: &mut Skipped) -> Result<(), DataError> {
    if skip {
        skipped.add(1, &err);
        Ok(())
    } else {
        Err(err)
    }
}

/// The files with one of `exts` under the class folder `dir`, sorted.
fn class_files(
    root: &DatasetRoot,
    dir: &Path,
    exts: &[&str],
    skip: bool,
    skipped: &mut Skipped,
) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for (path, kind) in entries(&d)? {
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() {
                match root.resolve_link(&path) {
                    Ok(Target::File(_)) if !has_extension(&path, exts) => {}
                    Ok(Target::File(resolved)) => match root.check_inside(&path, &resolved) {
                        Ok(()) => files.push(path),
                        Err(e) => refuse(e, skip, skipped)?,
                    },
                    Ok(Target::Folder(t)) => refuse(folder_link_error(&path, &t), skip, skipped)?,
                    Err(e) => refuse(e, skip, skipped)?,
                }
            } else if kind.is_file() && has_extension(&path, exts) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// torchvision's ImageFolder: `folder/<class>/**/<file>`, one class per
/// sub-folder of `folder`, ids relative to `folder`. Files at the top are
/// ignored, as torchvision does.
pub fn class_folders(
    root: &DatasetRoot,
    folder: &Path,
    exts: &[&str],
    skip: bool,
) -> Result<(Vec<SourceItem>, Skipped), DataError> {
    let mut items = Vec::new();
    let mut skipped = Skipped::default();
    let mut classes = 0;
    for (path, kind) in entries(folder)? {
        if kind.is_symlink() {
            match root.resolve_link(&path) {
                Ok(Target::Folder(t)) => refuse(folder_link_error(&path, &t), skip, &mut skipped)?,
                Ok(Target::File(_)) => {}
                Err(e) => refuse(e, skip, &mut skipped)?,
            }
            continue;
        }
        if !kind.is_dir() {
            continue;
        }
        classes += 1;
        let class = path
            .file_name()
            .expect("a listed entry has a name")
            .to_string_lossy()
            .into_owned();
        let files = class_files(root, &path, exts, skip, &mut skipped)?;
        if files.is_empty() {
            let err = DataError::file(
                &path,
                format!(
                    "class folder has no files with the extensions {}",
                    exts.join(" ")
                ),
            );
            refuse(err, skip, &mut skipped)?;
        }
        items.extend(files.into_iter().map(|f| {
            SourceItem {
                id: f
                    .strip_prefix(folder)
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .into_owned(),
                class: class.clone(),
                locator: Locator::File(f),
                split: None,
            }
        }));
    }
    if classes == 0 {
        return Err(DataError::file(folder, "has no class folders"));
    }
    Ok((items, skipped))
}

#[cfg(test)]
#[path = "walk_tests.rs"]
mod tests;
