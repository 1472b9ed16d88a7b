//! `tuneflow graph`: the stage graph as Graphviz dot or a Mermaid flowchart.
#![expect(clippy::print_stdout, reason = "graph prints the graph")]

use crate::cli::{GraphArgs, GraphFormat};
use crate::error::{exit, RunError};
use crate::pipeline::{self, Plan};

/// Runs `tuneflow graph`.
pub fn graph(args: &GraphArgs) -> Result<i32, RunError> {
    let plan = pipeline::load(&args.pipeline, &[])?;
    print!("{}", render(&plan, args.format));
    Ok(exit::SUCCESS)
}

/// Renders the graph.
pub fn render(plan: &Plan, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            out.push_str(&format!("digraph {:?} {{\n  rankdir=LR;\n", plan.name));
            for s in &plan.stages {
                out.push_str(&format!(
                    "  {:?} [label=\"{}\\n({})\"];\n",
                    s.name,
                    s.name,
                    s.stage.kind()
                ));
            }
            for s in &plan.stages {
                for &j in &s.upstream {
                    out.push_str(&format!("  {:?} -> {:?};\n", plan.stages[j].name, s.name));
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, s) in plan.stages.iter().enumerate() {
                out.push_str(&format!("  s{i}[\"{} ({})\"]\n", s.name, s.stage.kind()));
            }
            for (i, s) in plan.stages.iter().enumerate() {
                for &j in &s.upstream {
                    out.push_str(&format!("  s{j} --> s{i}\n"));
                }
            }
        }
    }
    out
}
