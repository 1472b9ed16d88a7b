//! Sweeps from the command line: `--set finetune.lr=0.1,0.3,1.0` names
//! three variants, and two such `--set`s their grid. A value with a comma
//! that is one value quotes it (`--set 'train.cmd="echo a,b"'`); commas
//! inside `[...]`, `{...}` or quotes never split.

use super::error::PipelineError;

/// Each variant's overrides, in grid order (the last `--set` varies
/// fastest). Without a list, the one variant is `sets` itself.
pub fn variants(sets: &[String]) -> Result<Vec<Vec<String>>, PipelineError> {
    let mut out: Vec<Vec<String>> = vec![Vec::new()];
    for set in sets {
        let Some((key, value)) = set.split_once('=') else {
            // `apply_overrides` names the problem.
            out.iter_mut().for_each(|v| v.push(set.clone()));
            continue;
        };
        let values = split_top_level(value);
        if values.iter().any(|v| v.trim().is_empty()) {
            return Err(PipelineError::Usage(format!(
                "`--set {set}`: a sweep lists values separated by commas, none empty (quote a value that holds a comma)"
            )));
        }
        out = out
            .into_iter()
            .flat_map(|v| {
                values.iter().map(move |x| {
                    let mut w = v.clone();
                    w.push(format!("{key}={}", x.trim()));
                    w
                })
            })
            .collect();
    }
    Ok(out)
}

/// The sweeps a pipeline file declares in its `[sweep]` table, as `--set`
/// lists (`"finetune.optimizer.lr" = [0.003, 0.01]` ->
/// `finetune.optimizer.lr=0.003,0.01`), leaving out the keys `cli` sets:
/// the command line wins.
pub fn from_file(path: &std::path::Path, cli: &[String]) -> Result<Vec<String>, PipelineError> {
    let text = std::fs::read_to_string(path).map_err(|e| PipelineError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Only a file that mentions a sweep is parsed a second time.
    if !text.contains("sweep") {
        return Ok(Vec::new());
    }
    let bad = |m: String| PipelineError::Usage(format!("{}: {m}", path.display()));
    let doc: toml::Table = match text.parse() {
        Ok(d) => d,
        // The planner reports a malformed file with its place.
        Err(_) => return Ok(Vec::new()),
    };
    let Some(table) = doc.get("sweep") else {
        return Ok(Vec::new());
    };
    let table = table
        .as_table()
        .ok_or_else(|| bad("`sweep` must be a table of KEY = [values]".into()))?;
    let set_by_cli = |k: &str| {
        cli.iter()
            .any(|s| s.split_once('=').is_some_and(|(c, _)| c.trim() == k))
    };
    let mut out = Vec::new();
    for (key, values) in table {
        let list = values.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
            bad(format!(
                "`sweep.\"{key}\"` must be a non-empty list of values, like [0.1, 0.3]"
            ))
        })?;
        if set_by_cli(key) {
            continue;
        }
        let texts: Vec<String> = list.iter().map(toml::Value::to_string).collect();
        out.push(format!("{key}={}", texts.join(",")));
    }
    Ok(out)
}

/// `a,b,[c,d],"e,f"` -> `a`, `b`, `[c,d]`, `"e,f"`.
fn split_top_level(value: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut quote, mut start) = (Vec::new(), 0i32, None, 0);
    for (i, c) in value.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(sets: &[&str]) -> Vec<Vec<String>> {
        variants(&sets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn lists_become_variants_and_two_lists_a_grid() {
        assert_eq!(v(&["a.x=1"]), [["a.x=1"]]);
        assert_eq!(v(&["a.x=1,2,3"]), [["a.x=1"], ["a.x=2"], ["a.x=3"]]);
        assert_eq!(
            v(&["a.x=1,2", "b.y=p, q", "c=z"]),
            [
                ["a.x=1", "b.y=p", "c=z"],
                ["a.x=1", "b.y=q", "c=z"],
                ["a.x=2", "b.y=p", "c=z"],
                ["a.x=2", "b.y=q", "c=z"],
            ]
        );
    }

    #[test]
    fn arrays_tables_and_quoted_commas_are_one_value() {
        assert_eq!(v(&["a.x=[1,2]"]), [["a.x=[1,2]"]]);
        assert_eq!(v(&["a.x={p=1,q=2}"]), [["a.x={p=1,q=2}"]]);
        assert_eq!(v(&["a.x=\"p,q\""]), [["a.x=\"p,q\""]]);
        assert_eq!(v(&["a.x=[1,2],[3]"]), [["a.x=[1,2]"], ["a.x=[3]"]]);
        assert!(variants(&["a.x=1,,2".to_string()]).is_err());
    }
}
