//! The pipeline file as written: TOML parsed with spans into the params
//! value tree, plus `--set` overrides (which carry no span).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use toml_edit::{Item, Value as TomlValue};
use tuneflow_stages::{Spanned, Table, Value, ValueKind};

use super::error::{Diagnostic, PipelineError};

/// A pipeline file this long (bytes) is large: its parsed forms are kept
/// to the end of the process ([`super::keep_to_exit`]).
pub(super) const LARGE: usize = 256 << 10;

/// A loaded pipeline file.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The file, as given.
    pub path: PathBuf,
    /// Its text, for rendering diagnostics.
    pub source: Arc<str>,
    /// The top-level table.
    pub root: Table,
}

impl PipelineSpec {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, PipelineError> {
        let source: Arc<str> = fs_err::read_to_string(path)
            .map_err(|e| PipelineError::Unreadable {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
            .into();
        Self::parse(path, source)
    }

    /// Parses TOML text that came from `path`.
    pub fn parse(path: &Path, source: Arc<str>) -> Result<Self, PipelineError> {
        let doc = toml_edit::ImDocument::parse(source.to_string()).map_err(|e| {
            PipelineError::Invalid {
                path: path.to_path_buf(),
                text: source.clone(),
                diagnostics: vec![Diagnostic {
                    message: format!("invalid TOML: {}", e.message().trim()),
                    span: e.span(),
                    label: "here".into(),
                    help: None,
                }],
            }
        })?;
        let root = convert_table(doc.as_table());
        super::keep_to_exit(doc, source.len() > LARGE);
        Ok(Self {
            path: path.to_path_buf(),
            source,
            root,
        })
    }

    /// Applies `--set a.b.c=value` overrides. The value is parsed as a TOML
    /// value when it is one (`3`, `true`, `[1, 2]`, `"x"`), else taken as a
    /// string. `stage.` may be left out: `train.epochs=3` means
    /// `stage.train.epochs=3` unless the first word is `pipeline` or `params`.
    pub fn apply_overrides(&mut self, overrides: &[String]) -> Result<(), PipelineError> {
        for o in overrides {
            let Some((path, raw)) = o.split_once('=') else {
                return Err(PipelineError::Usage(format!(
                    "`--set {o}` must look like `stage.key=value`"
                )));
            };
            let mut keys: Vec<&str> = path.trim().split('.').collect();
            if keys.len() < 2 || keys.iter().any(|k| k.is_empty()) {
                return Err(PipelineError::Usage(format!(
                    "`--set {o}`: `{path}` must name a table and a key, like `train.epochs`"
                )));
            }
            if !matches!(keys[0], "stage" | "pipeline" | "params" | "executor") {
                keys.insert(0, "stage");
            }
            if keys[0] == "stage" {
                self.check_stage(o, keys[1])?;
            }
            set_path(&mut self.root, &keys, parse_override_value(raw.trim()));
        }
        Ok(())
    }
}

impl PipelineSpec {
    /// A `--set` may change a stage of the file, never invent one.
    fn check_stage(&self, o: &str, name: &str) -> Result<(), PipelineError> {
        let stages = match self.root.get("stage").map(|v| &v.kind) {
            Some(ValueKind::Table(t)) => t.entries.iter().map(|(k, _)| k.value.as_str()).collect(),
            _ => Vec::new(),
        };
        if stages.contains(&name) {
            return Ok(());
        }
        let hint = match tuneflow_stages::suggest(name, stages.iter().copied()) {
            Some(s) => format!("; did you mean `{s}`?"),
            None if stages.is_empty() => String::new(),
            None => format!("; its stages are: {}", stages.join(", ")),
        };
        Err(PipelineError::Usage(format!(
            "`--set {o}`: `{}` has no stage `{name}`{hint}",
            self.path.display()
        )))
    }
}

fn parse_override_value(raw: &str) -> Value {
    let parsed = raw
        .parse::<TomlValue>()
        .ok()
        .map(|v| convert_value(&v))
        .map(strip_spans);
    parsed.unwrap_or(Value {
        kind: ValueKind::Str(raw.to_owned()),
        span: None,
    })
}

fn strip_spans(mut v: Value) -> Value {
    v.span = None;
    v.kind = match v.kind {
        ValueKind::Array(items) => ValueKind::Array(items.into_iter().map(strip_spans).collect()),
        ValueKind::Table(t) => ValueKind::Table(Table {
            entries: t
                .entries
                .into_iter()
                .map(|(mut k, v)| {
                    k.span = None;
                    (k, strip_spans(v))
                })
                .collect(),
        }),
        other => other,
    };
    v
}

fn set_path(table: &mut Table, keys: &[&str], value: Value) {
    let (first, rest) = keys.split_first().expect("at least one key");
    if rest.is_empty() {
        table.set(first, value);
        return;
    }
    if !matches!(table.get(first).map(|v| &v.kind), Some(ValueKind::Table(_))) {
        table.set(
            first,
            Value {
                kind: ValueKind::Table(Table::default()),
                span: None,
            },
        );
    }
    let (_, slot) = table
        .entries
        .iter_mut()
        .find(|(k, _)| k.value == *first)
        .expect("just inserted");
    if let ValueKind::Table(inner) = &mut slot.kind {
        set_path(inner, rest, value);
    }
}

fn convert_table(t: &toml_edit::Table) -> Table {
    let entries = t
        .iter()
        .filter_map(|(k, item)| {
            let key_span = t.key(k).and_then(|key| key.span());
            let value = convert_item(item)?;
            Some((
                Spanned {
                    value: k.to_owned(),
                    span: key_span,
                },
                value,
            ))
        })
        .collect();
    Table { entries }
}

fn convert_item(item: &Item) -> Option<Value> {
    match item {
        Item::None => None,
        Item::Value(v) => Some(convert_value(v)),
        Item::Table(t) => Some(Value {
            kind: ValueKind::Table(convert_table(t)),
            span: t.span(),
        }),
        Item::ArrayOfTables(a) => Some(Value {
            kind: ValueKind::Array(
                a.iter()
                    .map(|t| Value {
                        kind: ValueKind::Table(convert_table(t)),
                        span: t.span(),
                    })
                    .collect(),
            ),
            span: a.span(),
        }),
    }
}

fn convert_value(v: &TomlValue) -> Value {
    let kind = match v {
        TomlValue::String(s) => ValueKind::Str(s.value().clone()),
        TomlValue::Integer(i) => ValueKind::Int(*i.value()),
        TomlValue::Float(f) => ValueKind::Float(*f.value()),
        TomlValue::Boolean(b) => ValueKind::Bool(*b.value()),
        TomlValue::Datetime(d) => ValueKind::Str(d.value().to_string()),
        TomlValue::Array(a) => ValueKind::Array(a.iter().map(convert_value).collect()),
        TomlValue::InlineTable(t) => ValueKind::Table(Table {
            entries: t
                .iter()
                .map(|(k, v)| {
                    let span = t.key(k).and_then(|key| key.span());
                    (
                        Spanned {
                            value: k.to_owned(),
                            span,
                        },
                        convert_value(v),
                    )
                })
                .collect(),
        }),
    };
    Value {
        kind,
        span: v.span(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PipelineSpec {
        PipelineSpec::parse(Path::new("p.toml"), text.into()).unwrap()
    }

    #[test]
    fn values_keep_spans() {
        let text = "[stage.a]\nkind = \"command\"\n";
        let spec = parse(text);
        let stage = spec.root.get("stage").unwrap();
        let ValueKind::Table(stages) = &stage.kind else {
            panic!()
        };
        let ValueKind::Table(a) = &stages.get("a").unwrap().kind else {
            panic!()
        };
        let kind = a.get("kind").unwrap();
        assert_eq!(&text[kind.span.clone().unwrap()], "\"command\"");
    }

    #[test]
    fn overrides_parse_toml_values_and_default_to_stage_tables() {
        let mut spec = parse("[stage.a]\nkind = \"command\"\n");
        spec.apply_overrides(&["a.epochs=3".into(), "params.name=hello world".into()])
            .unwrap();
        let err = spec
            .apply_overrides(&["finetun.epochs=5".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no stage `finetun`"), "{err}");
        let mut other = parse("[stage.finetune]\nkind = \"command\"\n");
        let err = other
            .apply_overrides(&["finetun.epochs=5".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `finetune`?"), "{err}");
        let ValueKind::Table(stages) = &spec.root.get("stage").unwrap().kind else {
            panic!()
        };
        let ValueKind::Table(a) = &stages.get("a").unwrap().kind else {
            panic!()
        };
        assert_eq!(a.get("epochs").unwrap().kind, ValueKind::Int(3));
        let ValueKind::Table(params) = &spec.root.get("params").unwrap().kind else {
            panic!()
        };
        assert_eq!(
            params.get("name").unwrap().kind,
            ValueKind::Str("hello world".into())
        );
        assert!(spec.apply_overrides(&["novalue".into()]).is_err());
    }
}
