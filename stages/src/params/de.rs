//! A serde deserializer over the spanned value tree, so that nested tables
//! (`model = { ... }`, `optimizer = { ... }`, `ops = [...]`) are read into
//! typed structs with the same located errors as top-level keys: an unknown
//! key anywhere names its line and column and suggests the closest field,
//! a value of the wrong type points at that value.
//!
//! Structs list their fields to `deserialize_struct`, so every unknown key
//! of a table is reported at once; enums tagged by a field (`kind`, `op`)
//! go through serde's buffering and report their first problem, located at
//! the key when serde names it.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::{suggest, Diagnostic, Table, Value, ValueKind};

/// A problem found while reading a typed value.
#[derive(Debug, Clone, PartialEq)]
pub struct DeError {
    message: String,
    span: Option<Range<usize>>,
    /// The field serde called unknown, to be located in the table.
    unknown: Option<String>,
    help: Option<String>,
}

impl DeError {
    fn new(message: String) -> Self {
        Self {
            message,
            span: None,
            unknown: None,
            help: None,
        }
    }

    fn at(mut self, span: &Option<Range<usize>>) -> Self {
        if self.span.is_none() {
            self.span.clone_from(span);
        }
        self
    }

    /// The located error, for the diagnostics of `key`.
    pub fn into_param_error(self, key: &str) -> Diagnostic {
        Diagnostic {
            message: format!("invalid `{key}`: {}", self.message),
            span: self.span,
            label: "here".into(),
            help: self.help,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

fn did_you_mean(word: &str, expected: &'static [&'static str]) -> Option<String> {
    match suggest(word, expected.iter().copied()) {
        Some(s) => Some(format!("did you mean `{s}`?")),
        None if expected.is_empty() => None,
        None => Some(format!("expected one of: {}", expected.join(", "))),
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self {
            message: format!("unknown key `{field}`"),
            span: None,
            unknown: Some(field.to_owned()),
            help: did_you_mean(field, expected),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self {
            help: did_you_mean(variant, expected),
            ..Self::new(format!("unknown value `{variant}`"))
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(format!("missing `{field}`"))
    }
}

/// Reads `value` as `T`; every problem found is returned, located.
pub fn from_value<T: de::DeserializeOwned>(value: &Value) -> Result<T, Vec<DeError>> {
    let extra = RefCell::new(Vec::new());
    let de = ValueDe {
        value,
        extra: &extra,
    };
    // Tagged enums report some errors after the deserializer returned:
    // locate those in the value here.
    let result = T::deserialize(de.child(value)).map_err(|e| de.locate(e));
    let mut errors = extra.into_inner();
    match result {
        Ok(v) if errors.is_empty() => Ok(v),
        Ok(_) => Err(errors),
        Err(e) => {
            // serde's own error may repeat one already recorded.
            if !errors.contains(&e) {
                errors.push(e);
            }
            Err(errors)
        }
    }
}

/// The deserializer for one spanned value. `extra` collects the errors
/// that do not stop reading (unknown keys of a struct).
struct ValueDe<'a, 'e> {
    value: &'a Value,
    extra: &'e RefCell<Vec<DeError>>,
}

impl<'a, 'e> ValueDe<'a, 'e> {
    fn child(&self, value: &'a Value) -> Self {
        Self {
            value,
            extra: self.extra,
        }
    }

    /// Locates an error that came out of this value: at the key serde
    /// called unknown, else at the value itself.
    fn locate(&self, e: DeError) -> DeError {
        if e.span.is_some() {
            return e;
        }
        if let (Some(field), ValueKind::Table(t)) = (&e.unknown, &self.value.kind) {
            if let Some((k, _)) = t.entries.iter().find(|(k, _)| &k.value == field) {
                let span = k.span.clone();
                return e.at(&span);
            }
        }
        e.at(&self.value.span)
    }

    fn table(&self, fields: Option<&'static [&'static str]>) -> MapDe<'a, 'e> {
        let ValueKind::Table(t) = &self.value.kind else {
            unreachable!("only called on tables")
        };
        let mut entries: Vec<_> = t.entries.iter().collect();
        if let Some(fields) = fields {
            entries.retain(|(k, _)| {
                let known = fields.contains(&k.value.as_str());
                if !known {
                    let e = <DeError as de::Error>::unknown_field(&k.value, fields);
                    self.extra.borrow_mut().push(e.at(&k.span));
                }
                known
            });
        }
        MapDe {
            entries: entries.into_iter(),
            value: None,
            extra: self.extra,
        }
    }
}

impl<'de> de::Deserializer<'de> for ValueDe<'_, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.value.kind {
            ValueKind::Str(s) => visitor.visit_str(s),
            ValueKind::Int(i) => visitor.visit_i64(*i),
            ValueKind::Float(f) => visitor.visit_f64(*f),
            ValueKind::Bool(b) => visitor.visit_bool(*b),
            ValueKind::Array(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                extra: self.extra,
            }),
            ValueKind::Table(_) => visitor.visit_map(self.table(None)),
        };
        result.map_err(|e| self.locate(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.value.kind {
            ValueKind::Table(_) => {
                let map = self.table(Some(fields));
                visitor.visit_map(map).map_err(|e| self.locate(e))
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let span = self.value.span.clone();
        visitor.visit_some(self).map_err(|e| e.at(&span))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.value.kind {
            ValueKind::Str(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| self.locate(e)),
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map identifier ignored_any
    }
}

struct SeqDe<'a, 'e> {
    items: std::slice::Iter<'a, Value>,
    extra: &'e RefCell<Vec<DeError>>,
}

impl<'de> SeqAccess<'de> for SeqDe<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let de = ValueDe {
            value: item,
            extra: self.extra,
        };
        seed.deserialize(de).map(Some).map_err(|e| e.at(&item.span))
    }
}

type Entry<'a> = &'a (super::Spanned<String>, Value);

struct MapDe<'a, 'e> {
    entries: std::vec::IntoIter<Entry<'a>>,
    value: Option<Entry<'a>>,
    extra: &'e RefCell<Vec<DeError>>,
}

impl<'de> MapAccess<'de> for MapDe<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(entry);
        let key: de::value::StrDeserializer<'_, DeError> =
            entry.0.value.as_str().into_deserializer();
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.at(&entry.0.span))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, value) = self.value.take().expect("serde asks for a key first");
        let de = ValueDe {
            value,
            extra: self.extra,
        };
        let located = de.child(value);
        seed.deserialize(de).map_err(|e| {
            let e = located.locate(e);
            if e.message.starts_with("invalid type") || e.message.starts_with("invalid value") {
                DeError {
                    message: format!("`{}`: {}", key.value, e.message),
                    ..e
                }
            } else {
                e
            }
        })
    }
}

/// Reads a table as `T` (for a whole `[section]`).
pub fn from_table<T: de::DeserializeOwned>(
    table: &Table,
    span: Option<Range<usize>>,
) -> Result<T, Vec<DeError>> {
    from_value(&Value {
        kind: ValueKind::Table(table.clone()),
        span,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Spanned;

    fn v(kind: ValueKind, at: usize) -> Value {
        Value {
            kind,
            span: Some(at..at + 1),
        }
    }

    fn table(entries: Vec<(&str, usize, Value)>) -> Value {
        Value {
            kind: ValueKind::Table(Table {
                entries: entries
                    .into_iter()
                    .map(|(k, at, v)| {
                        (
                            Spanned {
                                value: k.to_owned(),
                                span: Some(at..at + k.len()),
                            },
                            v,
                        )
                    })
                    .collect(),
            }),
            span: Some(0..100),
        }
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "kebab-case", deny_unknown_fields)]
    struct Model {
        depth: u32,
        #[serde(default)]
        width: Option<i64>,
        #[serde(default)]
        pooling: Option<Pool>,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "kebab-case")]
    enum Pool {
        Avg,
        Stats,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
    enum Opt {
        Sgd {
            #[serde(default)]
            momentum: f64,
        },
    }

    #[test]
    fn every_unknown_key_is_located_with_a_suggestion() {
        let t = table(vec![
            ("depth", 1, v(ValueKind::Int(10), 9)),
            ("widht", 20, v(ValueKind::Int(8), 28)),
            ("poolng", 40, v(ValueKind::Str("avg".into()), 49)),
        ]);
        let errors = from_value::<Model>(&t).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].message, "unknown key `widht`");
        assert_eq!(errors[0].span, Some(20..25));
        assert_eq!(errors[0].help.as_deref(), Some("did you mean `width`?"));
        assert_eq!(errors[1].span, Some(40..46));
    }

    #[test]
    fn wrong_types_point_at_the_value_and_name_the_key() {
        let t = table(vec![("depth", 1, v(ValueKind::Str("ten".into()), 9))]);
        let errors = from_value::<Model>(&t).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].message.starts_with("`depth`: invalid type"));
        assert_eq!(errors[0].span, Some(9..10));
        let t = table(vec![
            ("depth", 1, v(ValueKind::Int(10), 9)),
            ("pooling", 20, v(ValueKind::Str("mean".into()), 30)),
        ]);
        let errors = from_value::<Model>(&t).unwrap_err();
        assert_eq!(errors[0].span, Some(30..31));
        assert!(errors[0].message.contains("unknown value `mean`"));
    }

    #[test]
    fn missing_fields_point_at_the_table() {
        let t = table(vec![]);
        let errors = from_value::<Model>(&t).unwrap_err();
        assert_eq!(errors[0].message, "missing `depth`");
        assert_eq!(errors[0].span, Some(0..100));
    }

    #[test]
    fn tagged_enums_locate_unknown_keys_too() {
        let t = table(vec![
            ("kind", 1, v(ValueKind::Str("sgd".into()), 8)),
            ("momentom", 20, v(ValueKind::Float(0.9), 31)),
        ]);
        let errors = from_value::<Opt>(&t).unwrap_err();
        assert_eq!(errors[0].message, "unknown key `momentom`");
        assert_eq!(errors[0].span, Some(20..28));
        assert_eq!(errors[0].help.as_deref(), Some("did you mean `momentum`?"));
        let ok = table(vec![
            ("kind", 1, v(ValueKind::Str("sgd".into()), 8)),
            ("momentum", 20, v(ValueKind::Int(1), 31)),
        ]);
        assert_eq!(from_value::<Opt>(&ok).unwrap(), Opt::Sgd { momentum: 1.0 });
    }
}
