//! The readers' error type. Every [`DataError`] names the file or folder it
//! is about and, where the format has one, where in it: a byte offset, a
//! RecordIO record, a line, or an item. Byte-level parsers that never see a
//! path return a [`FormatError`] (an offset and a message), which the
//! caller turns into a [`DataError`] with [`FormatError::in_file`].

use std::path::{Path, PathBuf};

use crate::stage::StageError;

/// Why a dataset file or folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The OS refused (missing file, permissions, a read that failed).
    #[error("failed to {action} `{path}`: {source}")]
    Io {
        /// What was being done (`read`, `list`, `open`...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Bytes at a known offset are not what the format says.
    #[error("`{path}` at byte {offset}: {message}")]
    Bytes {
        /// The file.
        path: PathBuf,
        /// Where in it.
        offset: u64,
        /// What was expected and what was found.
        message: String,
    },
    /// A RecordIO record is unreadable.
    #[error("`{path}` record {record} at byte {offset}: {message}")]
    Record {
        /// The `.rec` file.
        path: PathBuf,
        /// The record's key in the `.idx` (its position when the file is
        /// scanned without one).
        record: u64,
        /// Where the problem is (the record's start, or the part of it
        /// that is wrong).
        offset: u64,
        /// What was expected and what was found.
        message: String,
    },
    /// A line of a text file (an index, a pair or trial list, a split
    /// file, JSON) is wrong.
    #[error("`{path}` line {line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What was expected and what was found.
        message: String,
    },
    /// One item of a file that holds many (an image of a `.bin` file, a
    /// digit of an MNIST JSON file) is wrong.
    #[error("`{path}` item {item}: {message}")]
    Item {
        /// The file.
        path: PathBuf,
        /// 0-based position of the item in the file.
        item: u64,
        /// What was expected and what was found.
        message: String,
    },
    /// A whole file or folder is unusable (empty, too large, outside the
    /// dataset folder...).
    #[error("`{path}`: {message}")]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
}

impl DataError {
    /// A [`DataError::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A [`DataError::File`].
    pub fn file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::File {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A [`DataError::Line`].
    pub fn line(path: impl Into<PathBuf>, line: u64, message: impl Into<String>) -> Self {
        Self::Line {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// The file or folder the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::Bytes { path, .. }
            | Self::Record { path, .. }
            | Self::Line { path, .. }
            | Self::Item { path, .. }
            | Self::File { path, .. } => path,
        }
    }
}

/// The runner sees reader errors as a failed stage, with the same message.
impl From<DataError> for StageError {
    fn from(err: DataError) -> Self {
        StageError::Other(err.to_string())
    }
}

/// A problem found in bytes held in memory, located by byte offset where
/// the format has offsets; the caller knows which file the bytes are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", offset.map(|o| format!("at byte {o}: ")).unwrap_or_default())]
pub struct FormatError {
    /// Where in the bytes, if the problem has a place.
    pub offset: Option<u64>,
    /// What was expected and what was found.
    pub message: String,
}

impl FormatError {
    /// A problem at byte `offset`.
    pub fn at(offset: u64, message: impl Into<String>) -> Self {
        Self {
            offset: Some(offset),
            message: message.into(),
        }
    }

    /// A problem with the bytes as a whole.
    pub fn whole(message: impl Into<String>) -> Self {
        Self {
            offset: None,
            message: message.into(),
        }
    }

    /// Names the file the bytes came from.
    pub fn in_file(self, path: &Path) -> DataError {
        match self.offset {
            Some(offset) => DataError::Bytes {
                path: path.to_path_buf(),
                offset,
                message: self.message,
            },
            None => DataError::file(path, self.message),
        }
    }

    /// Names the file and the item (of a file that holds many) the bytes
    /// came from; a byte offset, if any, is relative to the item.
    pub fn in_item(self, path: &Path, item: u64) -> DataError {
        DataError::Item {
            path: path.to_path_buf(),
            item,
            message: self.to_string(),
        }
    }
}

/// How many skipped items `on-error = "skip"` names.
pub const SKIP_EXAMPLES: usize = 5;

/// What `on-error = "skip"` left out: how many, and why for the first few.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Items (or records, or class folders) left out.
    pub count: u64,
    /// The first [`SKIP_EXAMPLES`] reasons.
    pub examples: Vec<String>,
}

impl Skipped {
    /// Counts `n` items left out for `why`.
    pub fn add(&mut self, n: u64, why: &impl std::fmt::Display) {
        self.count += n;
        if self.examples.len() < SKIP_EXAMPLES {
            self.examples.push(why.to_string());
        }
    }

    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: Skipped) {
        self.count += other.count;
        let room = SKIP_EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
}

/// Reads a whole file, naming it on failure.
pub fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io("read", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_file_and_the_place() {
        let p = Path::new("d/train.rec");
        let e = DataError::Record {
            path: p.into(),
            record: 7,
            offset: 96,
            message: "bad magic".into(),
        };
        assert_eq!(
            e.to_string(),
            "`d/train.rec` record 7 at byte 96: bad magic"
        );
        assert_eq!(
            FormatError::at(3, "truncated").in_file(p).to_string(),
            "`d/train.rec` at byte 3: truncated"
        );
        assert_eq!(
            FormatError::whole("empty").in_file(p).to_string(),
            "`d/train.rec`: empty"
        );
        assert_eq!(
            FormatError::at(3, "x").in_item(p, 4).to_string(),
            "`d/train.rec` item 4: at byte 3: x"
        );
        let s: StageError = DataError::line(p, 2, "bad").into();
        assert_eq!(s.to_string(), "`d/train.rec` line 2: bad");
    }
}
