//! Paths a pipeline declares must stay inside the pipeline's folder.

use std::path::{Component, Path};

/// Normalizes a relative path (`./a//b/` -> `a/b`) or says why it is refused.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_rejects_escapes() {
        assert_eq!(normalize_rel("./a//b/").unwrap(), "a/b");
        assert!(normalize_rel("/etc/passwd").is_err());
        assert!(normalize_rel("a/../../x").is_err());
        assert!(normalize_rel(".").is_err());
    }
}
