//! Params as written in the pipeline file: a TOML value tree in which every
//! value keeps the byte span it came from (or none, for `--set` overrides),
//! and a reader that collects every error instead of stopping at the first.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ops::Range;

pub mod de;
mod refs;

pub use refs::{input_name, output_ref, OutputRef};

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Byte range in the pipeline file; `None` when it came from `--set`.
    pub span: Option<Range<usize>>,
}

/// A TOML value with spans.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    /// What it is.
    pub kind: ValueKind,
    /// Where it was written.
    pub span: Option<Range<usize>>,
}

/// The shape of a [`Value`].
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// An array.
    Array(Vec<Value>),
    /// A table.
    Table(Table),
}

impl ValueKind {
    /// The TOML type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Int(_) => "an integer",
            Self::Float(_) => "a float",
            Self::Bool(_) => "a boolean",
            Self::Array(_) => "an array",
            Self::Table(_) => "a table",
        }
    }
}

impl Value {
    /// Canonical text of the value: key order never matters, spans never
    /// enter it. Used for cache keys and for `status` explanations.
    pub fn canonical(&self) -> String {
        match &self.kind {
            ValueKind::Str(s) => format!("{s:?}"),
            ValueKind::Int(i) => i.to_string(),
            ValueKind::Float(f) => format!("{f:?}"),
            ValueKind::Bool(b) => b.to_string(),
            ValueKind::Array(items) => {
                let parts: Vec<_> = items.iter().map(Value::canonical).collect();
                format!("[{}]", parts.join(", "))
            }
            ValueKind::Table(t) => {
                let mut parts: Vec<_> = t
                    .entries
                    .iter()
                    .map(|(k, v)| format!("{:?} = {}", k.value, v.canonical()))
                    .collect();
                parts.sort();
                format!("{{{}}}", parts.join(", "))
            }
        }
    }

    /// The value as JSON (for typed configs read with serde).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            ValueKind::Str(s) => serde_json::Value::from(s.clone()),
            ValueKind::Int(i) => serde_json::Value::from(*i),
            ValueKind::Float(f) => serde_json::Value::from(*f),
            ValueKind::Bool(b) => serde_json::Value::from(*b),
            ValueKind::Array(items) => items.iter().map(Value::to_json).collect(),
            ValueKind::Table(t) => t
                .entries
                .iter()
                .map(|(k, v)| (k.value.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// The text to substitute for `${params.x}`: strings bare, others as TOML.
    pub fn interpolation_text(&self) -> String {
        match &self.kind {
            ValueKind::Str(s) => s.clone(),
            _ => self.canonical(),
        }
    }
}

/// A TOML table with spans, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// Keys (with their spans) and values.
    pub entries: Vec<(Spanned<String>, Value)>,
}

impl Table {
    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
    }
    /// Sets `key`, replacing an existing value.
    pub fn set(&mut self, key: &str, value: Value) {
        match self.entries.iter_mut().find(|(k, _)| k.value == key) {
            Some((_, v)) => *v = value,
            None => self.entries.push((
                Spanned {
                    value: key.to_owned(),
                    span: None,
                },
                value,
            )),
        }
    }
}

/// One problem in a pipeline file: what, where, and advice. The one
/// diagnostic type of the project: the runner renders it with the file's
/// text (file:line:col and a caret).
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// What is wrong (lowercase, no final period).
    pub message: String,
    /// Where; `None` for values from `--set` or absent keys.
    pub span: Option<Range<usize>>,
    /// The caret's label.
    pub label: String,
    /// Advice, e.g. "did you mean `command`?".
    pub help: Option<String>,
}

/// The closest candidate to `word`, if any is close enough to suggest.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// Reads typed params from a table, recording every error.
pub struct ParamReader<'a> {
    table: &'a Table,
    owner_span: Option<Range<usize>>,
    used: RefCell<BTreeSet<String>>,
    errors: RefCell<Vec<Diagnostic>>,
}

impl<'a> ParamReader<'a> {
    /// A reader over `table`; `owner_span` is where the table's header is.
    pub fn new(table: &'a Table, owner_span: Option<Range<usize>>) -> Self {
        Self {
            table,
            owner_span,
            used: RefCell::default(),
            errors: RefCell::default(),
        }
    }

    /// Records an error.
    pub fn error(&self, err: Diagnostic) {
        self.errors.borrow_mut().push(err);
    }

    /// The raw value under `key`, marking it used.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.used.borrow_mut().insert(key.to_owned());
        self.table.get(key)
    }

    fn type_error(&self, key: &str, v: &Value, expected: &str) {
        self.error(Diagnostic {
            message: format!("`{key}` must be {expected}, not {}", v.kind.type_name()),
            span: v.span.clone(),
            label: format!("expected {expected}"),
            help: None,
        });
    }

    /// A string param.
    pub fn str(&self, key: &str) -> Option<Spanned<String>> {
        self.as_str(key, self.raw(key)?)
    }

    /// `v` as a string, or a type error on `key`.
    fn as_str(&self, key: &str, v: &Value) -> Option<Spanned<String>> {
        match &v.kind {
            ValueKind::Str(s) => Some(Spanned {
                value: s.clone(),
                span: v.span.clone(),
            }),
            _ => {
                self.type_error(key, v, "a string");
                None
            }
        }
    }

    /// A required string param.
    pub fn required_str(&self, key: &str, what: &str) -> Option<Spanned<String>> {
        if self.table.get(key).is_none() {
            self.error(Diagnostic {
                message: format!("missing `{key}`"),
                span: self.owner_span.clone(),
                label: format!("this stage needs `{key}` ({what})"),
                help: None,
            });
            return None;
        }
        self.str(key)
    }

    /// A list of strings (a single string is accepted as a list of one).
    pub fn str_list(&self, key: &str) -> Vec<Spanned<String>> {
        let Some(v) = self.raw(key) else {
            return Vec::new();
        };
        let item = |v: &Value| self.as_str(key, v);
        match &v.kind {
            ValueKind::Array(items) => items.iter().filter_map(item).collect(),
            ValueKind::Str(_) => item(v).into_iter().collect(),
            _ => {
                self.type_error(key, v, "an array of strings");
                Vec::new()
            }
        }
    }

    /// A non-negative integer param.
    pub fn uint(&self, key: &str) -> Option<Spanned<u64>> {
        let v = self.raw(key)?;
        match &v.kind {
            ValueKind::Int(i) if *i >= 0 => Some(Spanned {
                value: *i as u64,
                span: v.span.clone(),
            }),
            ValueKind::Int(i) => {
                self.error(Diagnostic {
                    message: format!("`{key}` must be a non-negative integer, not `{i}`"),
                    span: v.span.clone(),
                    label: "expected 0 or more".into(),
                    help: None,
                });
                None
            }
            _ => {
                self.type_error(key, v, "a non-negative integer");
                None
            }
        }
    }

    /// A scalar param: `convert` maps the value, or `None` for a type error
    /// that says `expected`.
    fn scalar<T>(
        &self,
        key: &str,
        expected: &str,
        convert: impl FnOnce(&ValueKind) -> Option<T>,
    ) -> Option<Spanned<T>> {
        let v = self.raw(key)?;
        match convert(&v.kind) {
            Some(value) => Some(Spanned {
                value,
                span: v.span.clone(),
            }),
            None => {
                self.type_error(key, v, expected);
                None
            }
        }
    }

    /// A boolean param.
    pub fn bool(&self, key: &str) -> Option<Spanned<bool>> {
        self.scalar(key, "a boolean", |k| match k {
            ValueKind::Bool(b) => Some(*b),
            _ => None,
        })
    }

    /// A number param (an integer is accepted as a float).
    pub fn float(&self, key: &str) -> Option<Spanned<f64>> {
        self.scalar(key, "a number", |k| match k {
            ValueKind::Float(f) => Some(*f),
            ValueKind::Int(i) => Some(*i as f64),
            _ => None,
        })
    }

    /// A string param that must be one of `choices`.
    pub fn choice(&self, key: &str, choices: &[&str]) -> Option<Spanned<String>> {
        let s = self.str(key)?;
        if choices.contains(&s.value.as_str()) {
            return Some(s);
        }
        self.error(Diagnostic {
            message: format!("unknown `{key}` value `{}`", s.value),
            span: s.span.clone(),
            label: format!("expected one of: {}", choices.join(", ")),
            help: suggest(&s.value, choices.iter().copied())
                .map(|c| format!("did you mean `{c}`?")),
        });
        None
    }

    /// A string param that must be one of `choices`, and must be set.
    pub fn required_choice(&self, key: &str, choices: &[&str]) -> Option<Spanned<String>> {
        if self.table.get(key).is_none() {
            self.error(Diagnostic {
                message: format!("missing `{key}`"),
                span: self.owner_span.clone(),
                label: format!("this table needs `{key}` (one of: {})", choices.join(", ")),
                help: None,
            });
            return None;
        }
        self.choice(key, choices)
    }

    /// A table (or array) param read into a typed value through serde, with
    /// located errors at any depth (see [`de`]); `None` when absent or
    /// invalid (the errors are recorded).
    pub fn typed<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let v = self.raw(key)?;
        match de::from_value(v) {
            Ok(t) => Some(t),
            Err(errors) => {
                for e in errors {
                    self.error(e.into_param_error(key));
                }
                None
            }
        }
    }

    /// An array param read item by item into typed values (see
    /// [`Self::typed`]), so every bad item is reported; `None` when absent
    /// or when any item is invalid.
    pub fn typed_list<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<Vec<T>> {
        let v = self.raw(key)?;
        let ValueKind::Array(items) = &v.kind else {
            self.type_error(key, v, "an array");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for item in items {
            match de::from_value(item) {
                Ok(t) => out.push(t),
                Err(errors) => {
                    ok = false;
                    for e in errors {
                        self.error(e.into_param_error(key));
                    }
                }
            }
        }
        ok.then_some(out)
    }

    /// Reads a nested table with its own reader; its errors join this one's.
    pub fn nested<T>(&self, key: &str, read: impl FnOnce(&ParamReader<'_>) -> T) -> Option<T> {
        let t = self.table(key)?;
        let inner = ParamReader::new(t, self.raw(key).and_then(|v| v.span.clone()));
        let out = read(&inner);
        for e in inner.finish() {
            self.error(e);
        }
        Some(out)
    }

    /// A table param.
    pub fn table(&self, key: &str) -> Option<&'a Table> {
        let v = self.raw(key)?;
        match &v.kind {
            ValueKind::Table(t) => Some(t),
            _ => {
                self.type_error(key, v, "a table");
                None
            }
        }
    }

    /// Reports keys no reader asked for, suggesting the closest known one,
    /// and returns every error collected.
    pub fn finish(self) -> Vec<Diagnostic> {
        let used = self.used.into_inner();
        let mut errors = self.errors.into_inner();
        for (k, _) in &self.table.entries {
            if used.contains(&k.value) {
                continue;
            }
            let help = suggest(&k.value, used.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| {
                    let known: Vec<_> = used.iter().map(|u| format!("`{u}`")).collect();
                    Some(format!("known keys here: {}", known.join(", ")))
                });
            errors.push(Diagnostic {
                message: format!("unknown key `{}`", k.value),
                span: k.span.clone(),
                label: "not a known key here".into(),
                help,
            });
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value {
            kind: ValueKind::Str(v.into()),
            span: Some(0..1),
        }
    }

    #[test]
    fn canonical_ignores_key_order_and_spans() {
        let mut a = Table::default();
        a.set("x", s("1"));
        a.set(
            "y",
            Value {
                kind: ValueKind::Int(2),
                span: None,
            },
        );
        let mut b = Table::default();
        b.set(
            "y",
            Value {
                kind: ValueKind::Int(2),
                span: Some(5..6),
            },
        );
        b.set(
            "x",
            Value {
                kind: ValueKind::Str("1".into()),
                span: None,
            },
        );
        let va = Value {
            kind: ValueKind::Table(a),
            span: None,
        };
        let vb = Value {
            kind: ValueKind::Table(b),
            span: Some(1..2),
        };
        assert_eq!(va.canonical(), vb.canonical());
    }

    #[test]
    fn reader_reports_types_missing_and_unknown_with_suggestions() {
        let mut t = Table::default();
        t.set(
            "cmd",
            Value {
                kind: ValueKind::Int(3),
                span: Some(3..4),
            },
        );
        t.set("depz", s("a"));
        let r = ParamReader::new(&t, Some(0..1));
        assert!(r.str("cmd").is_none());
        assert!(r.required_str("outs", "files").is_none());
        let _ = r.str_list("deps");
        let errors = r.finish();
        let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`cmd` must be a string, not an integer",
                "missing `outs`",
                "unknown key `depz`"
            ]
        );
        assert_eq!(errors[2].help.as_deref(), Some("did you mean `deps`?"));
    }

    #[test]
    fn suggest_finds_near_misses_only() {
        assert_eq!(suggest("comand", ["command", "ingest"]), Some("command"));
        assert_eq!(suggest("zzz", ["command", "ingest"]), None);
    }
}
