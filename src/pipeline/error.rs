//! Why a pipeline could not be loaded or planned, rendered with
//! file:line:col and a caret for every problem at once.

use std::path::PathBuf;
use std::sync::Arc;

pub use tuneflow_stages::Diagnostic;

/// Why a pipeline could not be loaded or planned.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The file could not be read.
    #[error("failed to read pipeline `{path}`: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The file has errors (all of them are listed).
    #[error("pipeline `{path}` is invalid ({} error{})", diagnostics.len(), if diagnostics.len() == 1 { "" } else { "s" })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Its text.
        text: Arc<str>,
        /// Every problem found.
        diagnostics: Vec<Diagnostic>,
    },
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
}

impl PipelineError {
    /// Renders every diagnostic with file:line:column and a caret, without
    /// colour, `width` columns wide.
    pub fn render(&self, width: usize) -> String {
        let Self::Invalid {
            path,
            text,
            diagnostics,
        } = self
        else {
            return format!("error: {self}\n");
        };
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .with_width(width);
        let mut out = String::new();
        let name = path.display().to_string();
        for d in diagnostics.iter().take(MAX_SHOWN) {
            if let Some(plain) = plain_if_long(&name, text, d) {
                out.push_str(&plain);
                continue;
            }
            let report = Rendered {
                d: d.clone(),
                src: miette::NamedSource::new(name.clone(), text.clone()),
            };
            let _ = handler.render_report(&mut out, &report);
            if d.span.is_none() {
                out.push_str(&format!(
                    "  (in `{}`, from --set or a missing key)\n",
                    path.display()
                ));
            }
        }
        if diagnostics.len() > MAX_SHOWN {
            out.push_str(&format!(
                "  ... and {} more problems like these\n",
                diagnostics.len() - MAX_SHOWN
            ));
        }
        out.push_str(&format!("error: {self}\n"));
        out
    }
}

/// Problems shown in full; a file with thousands gets the first ones.
const MAX_SHOWN: usize = 50;
/// Longer source lines are not drawn with a caret: `file:line:col` only.
const MAX_SNIPPET_LINE: usize = 2000;

/// A one-line rendering with `file:line:col`, for a problem on a line too
/// long to draw.
fn plain_if_long(name: &str, text: &str, d: &Diagnostic) -> Option<String> {
    let span = d.span.as_ref()?;
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    if line_end - line_start <= MAX_SNIPPET_LINE {
        return None;
    }
    let line = text[..start].matches('\n').count() + 1;
    let col = text[line_start..start].chars().count() + 1;
    let help = d
        .help
        .as_ref()
        .map(|h| format!("  help: {h}\n"))
        .unwrap_or_default();
    Some(format!(
        "  × {}\n    at {name}:{line}:{col} ({})\n{help}",
        d.message, d.label
    ))
}

#[derive(Debug)]
struct Rendered {
    d: Diagnostic,
    src: miette::NamedSource<Arc<str>>,
}

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.d.message)
    }
}
impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.d
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.d
            .span
            .as_ref()
            .map(|_| &self.src as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let span = self.d.span.clone()?;
        let label = miette::LabeledSpan::new(Some(self.d.label.clone()), span.start, span.len());
        Some(Box::new(std::iter::once(label)))
    }
}
