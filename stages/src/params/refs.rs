//! References to other stages' outputs, in one place: written as
//! `"stage.output"` (or a bare `"stage"` meaning a kind's default output),
//! and known to the runner as the input `"stage/output"`.

use std::fmt;

use super::Spanned;

/// A stage's output: `stage.output`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutputRef {
    /// The producing stage.
    pub stage: String,
    /// Its output's name (for command stages, a path).
    pub output: String,
}

impl OutputRef {
    /// `"stage.output"`, or `"stage"` (then `output` is empty: every
    /// output, or the kind's default, as the reader decides). Output names
    /// may contain dots (`out/a.txt`): only the first dot splits.
    pub fn parse(written: &str) -> Self {
        match written.split_once('.') {
            Some((stage, output)) => Self {
                stage: stage.to_owned(),
                output: output.to_owned(),
            },
            None => Self {
                stage: written.to_owned(),
                output: String::new(),
            },
        }
    }

    /// The runner's input name: `stage/output`.
    pub fn input_name(&self) -> String {
        format!("{}/{}", self.stage, self.output)
    }

    /// The reference an input name stands for.
    pub fn from_input_name(name: &str) -> Option<Self> {
        let (stage, output) = name.split_once('/')?;
        Some(Self {
            stage: stage.to_owned(),
            output: output.to_owned(),
        })
    }
}

impl fmt::Display for OutputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.stage, self.output)
    }
}

/// A reference as written, with `default` filled in for a bare `"stage"`.
pub fn output_ref(v: Spanned<String>, default: &str) -> Spanned<String> {
    if v.value.contains('.') {
        return v;
    }
    Spanned {
        value: format!("{}.{default}", v.value),
        span: v.span,
    }
}

/// The input name of the written reference `"stage.output"`.
pub fn input_name(output: &str) -> String {
    OutputRef::parse(output).input_name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_splits_at_the_first_dot() {
        let r = OutputRef::parse("ingest.out/a.txt");
        assert_eq!(r.stage, "ingest");
        assert_eq!(r.output, "out/a.txt");
        assert_eq!(r.input_name(), "ingest/out/a.txt");
        assert_eq!(OutputRef::from_input_name(&r.input_name()), Some(r.clone()));
        assert_eq!(r.to_string(), "ingest.out/a.txt");
        assert_eq!(OutputRef::parse("pretrain").output, "");
        let bare = Spanned {
            value: "pretrain".to_owned(),
            span: None,
        };
        assert_eq!(output_ref(bare, "model").value, "pretrain.model");
    }
}
