//! Text index files inside a dataset: LFW's `pairs.txt`, VoxCeleb's
//! `iden_split.txt` and `label enroll test` trial lists.
//!
//! Every name read from them is confined to the dataset folder (issue
//! #11): a relative path with no `..`, `.` or root component (LFW names
//! are a single folder name). A bad name is an error naming the file, the
//! line and the name. A list with nothing in it is an error too, never an
//! empty dataset.

use std::collections::HashMap;
use std::path::{Component, Path};

use super::error::DataError;

/// A verification trial: same identity or not, and the two items' ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// Whether both items show the same identity.
    pub same: bool,
    /// First item's id.
    pub a: String,
    /// Second item's id.
    pub b: String,
    /// Where it was read ("pairs.txt line 3"), for errors.
    pub origin: String,
}

/// The non-blank lines of a UTF-8 text file, with 1-based numbers.
fn lines(path: &Path) -> Result<Vec<(u64, String)>, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io("read", path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        DataError::Bytes {
            path: path.to_path_buf(),
            offset: at as u64,
            message: "not UTF-8 text".into(),
        }
    })?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| (n as u64 + 1, l.to_owned()))
        .collect())
}

/// A line as shown in a message: at most 80 characters.
fn shown(line: &str) -> String {
    line.chars().take(80).collect()
}

/// Checks that `name` is a relative path that stays inside the folder it
/// is read against.
pub fn confined(name: &str) -> Result<(), String> {
    let escapes = name.is_empty()
        || name.contains('\0')
        || !Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if escapes {
        return Err(format!(
            "name `{}` is not a relative path inside the dataset folder (no `..`, `.` or leading `/`)",
            shown(name)
        ));
    }
    Ok(())
}

/// Checks an LFW person name: one folder name.
fn person(name: &str) -> Result<(), String> {
    confined(name)?;
    if name.contains('/') {
        return Err(format!(
            "name `{}` is not a single folder name",
            shown(name)
        ));
    }
    Ok(())
}

/// The header of an LFW pair list: `folds<TAB>pairs` (folds x pairs
/// matched and as many mismatched) or `pairs` (View 1); the pair count.
fn lfw_header(line: &str) -> Option<u64> {
    let nums: Option<Vec<u64>> = line.split_whitespace().map(|f| f.parse().ok()).collect();
    match nums?.as_slice() {
        [folds, per_fold] => folds.checked_mul(*per_fold)?.checked_mul(2),
        [pairs] => pairs.checked_mul(2),
        _ => None,
    }
}

/// LFW `pairs.txt`: a header line, then `name n1 n2` (matched) and
/// `name1 n1 name2 n2` (mismatched); ids are `Name/Name_NNNN.jpg`. The
/// header's pair count must match the lines, so a truncated list is an
/// error rather than fewer trials.
pub fn lfw_pairs(path: &Path) -> Result<Vec<Trial>, DataError> {
    let all = lines(path)?;
    let Some(((header_line, header), rest)) = all.split_first() else {
        return Err(DataError::file(
            path,
            "is empty: expected a header line and pairs",
        ));
    };
    let expected = lfw_header(header).ok_or_else(|| {
        DataError::line(
            path,
            *header_line,
            format!(
                "expected a header (`<folds><TAB><pairs per fold>` or `<pairs>`), found {:?}",
                shown(header)
            ),
        )
    })?;
    let mut trials = Vec::with_capacity(rest.len());
    for (n, line) in rest {
        let bad = |m: String| DataError::line(path, *n, m);
        let image = |name: &str, num: &str| -> Result<String, DataError> {
            person(name).map_err(bad)?;
            let num: u32 = num
                .parse()
                .map_err(|_| bad(format!("`{}` is not an image number", shown(num))))?;
            Ok(format!("{name}/{name}_{num:04}.jpg"))
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        let (same, a, b) = match f[..] {
            [name, n1, n2] => (true, image(name, n1)?, image(name, n2)?),
            [a, n1, b, n2] => (false, image(a, n1)?, image(b, n2)?),
            _ => {
                return Err(bad(format!(
                    "expected `name n1 n2` or `name1 n1 name2 n2`, found {} fields",
                    f.len()
                )))
            }
        };
        let origin = format!("{} line {n}", path.display());
        trials.push(Trial { same, a, b, origin });
    }
    if trials.len() as u64 != expected {
        return Err(DataError::file(
            path,
            format!(
                "the header (line {header_line}: {:?}) announces {expected} pairs but the file has {}: it is truncated or its header is wrong",
                shown(header),
                trials.len()
            ),
        ));
    }
    Ok(trials)
}

/// VoxCeleb `iden_split.txt`: `<set> <path>` per line, set 1 (train), 2
/// (val) or 3 (test); path -> split.
pub fn iden_split(path: &Path) -> Result<HashMap<String, &'static str>, DataError> {
    let mut splits = HashMap::new();
    for (n, line) in lines(path)? {
        let bad = |m: String| DataError::line(path, n, m);
        let (set, name) = line
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad(format!("expected `<set> <path>`, found {:?}", shown(&line))))?;
        let split = match set {
            "1" => "train",
            "2" => "val",
            "3" => "test",
            other => {
                return Err(bad(format!(
                    "unknown set `{}` (expected 1, 2 or 3)",
                    shown(other)
                )))
            }
        };
        let name = name.trim();
        confined(name).map_err(bad)?;
        if let Some(before) = splits.insert(name.to_owned(), split) {
            if before != split {
                return Err(bad(format!("`{name}` is listed in two sets")));
            }
        }
    }
    if splits.is_empty() {
        return Err(DataError::file(path, "has no entries"));
    }
    Ok(splits)
}

/// A `label enroll test` trial list (label `1`/`0` or `target`/
/// `nontarget`), ids relative to the dataset's item folder.
pub fn trial_list(path: &Path) -> Result<Vec<Trial>, DataError> {
    let mut out = Vec::new();
    for (n, line) in lines(path)? {
        let bad = |m: String| DataError::line(path, n, m);
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [label, a, b] = parts[..] else {
            return Err(bad(format!(
                "expected `<label> <enroll> <test>`, found {:?}",
                shown(&line)
            )));
        };
        let same = match label {
            "1" | "target" => true,
            "0" | "nontarget" => false,
            other => return Err(bad(format!("label `{}` is not 0 or 1", shown(other)))),
        };
        confined(a).map_err(bad)?;
        confined(b).map_err(bad)?;
        out.push(Trial {
            same,
            a: a.to_owned(),
            b: b.to_owned(),
            origin: format!("{} line {n}", path.display()),
        });
    }
    if out.is_empty() {
        return Err(DataError::file(path, "has no trials"));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "lists_tests.rs"]
mod tests;
