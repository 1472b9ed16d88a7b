//! Paths a pipeline declares must stay inside the pipeline's folder.

use std::path::{Component, Path, PathBuf};

/// `path` as the filesystem will see it: its longest existing ancestor
/// with symlinks and `..` resolved, then the rest (which does not exist
/// yet) normalized. Two paths overlap on disk iff their resolutions do.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let parts: Vec<Component<'_>> = absolute.components().collect();
    for k in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..k].iter().collect();
        let Ok(mut out) = std::fs::canonicalize(&prefix) else {
            continue;
        };
        for c in &parts[k..] {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(s) => out.push(s),
                _ => {}
            }
        }
        return out;
    }
    absolute
}

/// Whether `a` is `b` or lies inside it, for paths as [`resolve`] returns
/// them (absolute, no `.`, `..`, repeated or trailing `/`): what
/// `Path::starts_with` says, without splitting both into components
/// (planning compares every output with a few reserved folders).
pub fn within(a: &Path, b: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (a, b) = (a.as_os_str().as_bytes(), b.as_os_str().as_bytes());
    a.starts_with(b) && (a.len() == b.len() || b.ends_with(b"/") || a[b.len()] == b'/')
}

/// [`resolve`] for many paths under the same folders: each folder is
/// resolved once. A path with `.` or `..`, or whose last part is a
/// symlink, goes through [`resolve`] itself, so the answers are the same.
#[derive(Debug, Default)]
pub struct Resolver {
    folders: std::collections::HashMap<PathBuf, PathBuf>,
    /// Whether a folder is a symlink (`Some(true)`), or missing (`None`).
    links: std::collections::HashMap<PathBuf, Option<bool>>,
    /// Per folder: how many of its entries were asked about, and, from
    /// the [`LIST_AFTER`]th, its listing.
    listed: std::collections::HashMap<PathBuf, Listing>,
}

/// Asked about this many entries of one folder, the resolver lists the
/// folder once (one `getdents` for many entries) instead of an `lstat`
/// per entry: a 10,000-output folder costs 5 ms instead of 20 ms, and a
/// folder asked about a few times is never listed.
const LIST_AFTER: usize = 32;

#[derive(Debug, Default)]
struct Listing {
    asked: usize,
    /// Each entry's type as the listing gives it (`None`: not given).
    entries: Option<std::collections::HashMap<std::ffi::OsString, Option<std::fs::FileType>>>,
}

fn list(
    dir: &Path,
) -> Option<std::collections::HashMap<std::ffi::OsString, Option<std::fs::FileType>>> {
    let mut out = std::collections::HashMap::new();
    for e in std::fs::read_dir(dir).ok()? {
        let e = e.ok()?;
        // `file_type` is the directory entry's own type where the file
        // system gives one, with no `lstat`.
        out.insert(e.file_name(), e.file_type().ok());
    }
    Some(out)
}

impl Resolver {
    /// `path` resolved as [`resolve`] does.
    pub fn resolve(&mut self, path: &Path) -> PathBuf {
        let plain = path.is_absolute()
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return resolve(path);
        };
        if !plain || self.is_symlink(parent, name, path) {
            return resolve(path);
        }
        if let Some(folder) = self.folders.get(parent) {
            return folder.join(name);
        }
        let folder = resolve(parent);
        self.folders.insert(parent.to_path_buf(), folder.clone());
        folder.join(name)
    }

    /// Whether `path` (entry `name` of folder `parent`) is a symlink.
    fn is_symlink(&mut self, parent: &Path, name: &std::ffi::OsStr, path: &Path) -> bool {
        let lstat = || std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let listing = self.listed.entry(parent.to_path_buf()).or_default();
        listing.asked += 1;
        if listing.asked == LIST_AFTER {
            // Unlistable (gone, say): each entry is looked at instead.
            listing.entries = list(parent);
        }
        match listing.entries.as_ref().map(|e| e.get(name)) {
            // Listed: absent is not a symlink; an entry without a type
            // is looked at.
            Some(None) => false,
            Some(Some(Some(t))) => t.is_symlink(),
            Some(Some(None)) | None => lstat(),
        }
    }

    /// [`symlinked_component`], with each folder looked at once.
    pub fn symlinked_component(&mut self, dir: &Path, rel: &str) -> Option<String> {
        let mut cur = dir.to_path_buf();
        let parts: Vec<&str> = rel.split('/').collect();
        for (n, part) in parts[..parts.len().saturating_sub(1)].iter().enumerate() {
            cur.push(part);
            let link = *self.links.entry(cur.clone()).or_insert_with(|| {
                std::fs::symlink_metadata(&cur)
                    .ok()
                    .map(|m| m.file_type().is_symlink())
            });
            match link {
                Some(true) => return Some(parts[..=n].join("/")),
                Some(false) => {}
                None => return None,
            }
        }
        None
    }
}

/// The first folder of `rel` (below `dir`) that exists and is a symlink:
/// writing `rel` would go wherever it points.
pub fn symlinked_component(dir: &Path, rel: &str) -> Option<String> {
    Resolver::default().symlinked_component(dir, rel)
}

/// Normalizes a relative path (`./a//b/` -> `a/b`) or says why it is refused.
#[doc = "Normalizes a relative path."]
pub fn normalize_rel(p: &str) -> Result<String, &'static str> {
    if p.is_empty() {
        return Err("is empty");
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or("is not valid UTF-8")?),
            Component::CurDir => {}
            Component::ParentDir => return Err("escapes the pipeline's folder with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
        }
    }
    if parts.is_empty() {
        return Err("names the pipeline's folder itself");
    }
    Ok(parts.join("/"))
}

/// Normalizes a dependency path lexically. Dependencies are only read, so
/// unlike outputs they may be absolute or reach outside with `..` (datasets
/// rarely live inside the repository).
pub fn normalize_dep(p: &str) -> Result<String, &'static str> {
    if p.is_empty() {
        return Err("is empty");
    }
    let mut parts: Vec<&str> = Vec::new();
    let absolute = p.starts_with('/');
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or("is not valid UTF-8")?),
            Component::ParentDir if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            Component::ParentDir if absolute => {}
            Component::ParentDir => parts.push(".."),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => Ok(format!("/{joined}")),
        (false, true) => Err("names the pipeline's folder itself"),
        (false, false) => Ok(joined),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resolver_agrees_with_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(d.join("real/sub")).unwrap();
        std::fs::write(d.join("real/f"), b"x").unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        std::os::unix::fs::symlink(d.join("real/f"), d.join("real/to_f")).unwrap();
        let mut r = Resolver::default();
        for p in [
            "real/f",
            "real/sub",
            "real/new",
            "link/f",
            "link/new",
            "link/sub/x",
            "real/to_f",
            "missing/a/b",
            "real/../link/f",
            "./real/f",
            "link",
        ] {
            let path = d.join(p);
            assert_eq!(r.resolve(&path), resolve(&path), "{p}");
            assert_eq!(r.resolve(&path), resolve(&path), "{p}, again");
        }
    }

    #[test]
    fn the_resolver_agrees_with_resolve_in_a_folder_it_lists() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(d.join("elsewhere/sub")).unwrap();
        std::fs::create_dir_all(d.join("out")).unwrap();
        let mut names = Vec::new();
        for i in 0..3 * LIST_AFTER {
            let name = format!("f{i}");
            match i % 4 {
                0 => std::fs::write(d.join("out").join(&name), b"x").unwrap(),
                1 => std::os::unix::fs::symlink(d.join("elsewhere"), d.join("out").join(&name))
                    .unwrap(),
                2 => std::os::unix::fs::symlink(d.join("gone"), d.join("out").join(&name)).unwrap(),
                _ => {} // not there
            }
            names.push(name);
        }
        let mut r = Resolver::default();
        // Twice over: the first LIST_AFTER by lstat, the rest from the
        // listing.
        for name in names.iter().chain(&names) {
            let path = d.join("out").join(name);
            assert_eq!(r.resolve(&path), resolve(&path), "{name}");
        }
        assert!(r.listed[&d.join("out")].entries.is_some());
    }

    #[test]
    fn within_agrees_with_path_starts_with_on_resolved_paths() {
        let paths = ["/", "/a", "/a/b", "/ab", "/a/bc", "/a/b/c", "/b", "/a/.x"];
        for a in paths {
            for b in paths {
                let (a, b) = (Path::new(a), Path::new(b));
                assert_eq!(within(a, b), a.starts_with(b), "{a:?} in {b:?}");
            }
        }
    }

    #[test]
    fn resolve_follows_links_and_dots_of_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(d.join("out/cache")).unwrap();
        std::os::unix::fs::symlink(d.join("out"), d.join("link")).unwrap();
        assert_eq!(resolve(&d.join("x/../out/cache")), d.join("out/cache"));
        assert_eq!(
            resolve(&d.join("link/cache/new/y")),
            d.join("out/cache/new/y")
        );
        assert_eq!(
            symlinked_component(&d, "link/cache/z").as_deref(),
            Some("link")
        );
        assert_eq!(symlinked_component(&d, "out/cache/z"), None);
    }

    #[test]
    fn normalizes_and_rejects_escapes() {
        assert_eq!(normalize_rel("./a//b/").unwrap(), "a/b");
        assert!(normalize_rel("/etc/passwd").is_err());
        assert!(normalize_rel("a/../../x").is_err());
        assert!(normalize_rel(".").is_err());
        assert_eq!(normalize_dep("/data/../ms1m/").unwrap(), "/ms1m");
        assert_eq!(normalize_dep("../data/./x").unwrap(), "../data/x");
        assert_eq!(normalize_dep("a/../b").unwrap(), "b");
    }
}
