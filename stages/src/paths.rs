//! Paths a pipeline declares must stay inside the pipeline's folder.

use std::path::{Component, Path};

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
