//! The `fine-tune` kind: moves a trained backbone to a new task. It starts
//! from an upstream `model` (a `pretrain` or `freeze` stage), from external
//! weights (`init`), or from scratch (neither: the baseline), replaces the
//! head for the new classes, optionally adapts the stem to other input
//! channels, and trains with per-group learning rates and early stopping.
//! The training itself runs in the `tuneflow-torch` worker.

use crate::formats::freeze::normalise;
use crate::formats::model::ModelConfig;
use crate::params::{input_name, output_ref, Diagnostic, ParamReader, Spanned, ValueKind};
use crate::stage::{BuildContext, Inputs, Kind, StageContext, StageDecl, StageError, StageOutputs};
use crate::train::config::TransferConfig;
use crate::train::read::{dataset_ref, model, train_config, Training};
use crate::worker::client::run_training;
use crate::worker::WorkerJob;

/// A configured `fine-tune` stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FineTune {
    #[serde(flatten)]
    training: Training,
    /// The upstream model input (`stage/model`).
    from: Option<String>,
    /// External weights, relative to the pipeline folder.
    init: Option<String>,
}

/// `head = { classes = "auto" | N }`.
fn classes(r: &ParamReader<'_>) -> Option<Option<usize>> {
    r.nested("head", head_classes).unwrap_or(Some(None))
}

fn head_classes(r: &ParamReader<'_>) -> Option<Option<usize>> {
    let Some(v) = r.raw("classes") else {
        return Some(None);
    };
    match &v.kind {
        ValueKind::Str(s) if s == "auto" => Some(None),
        ValueKind::Int(n) if *n >= 2 => Some(Some(*n as usize)),
        _ => {
            r.error(Diagnostic {
                message: "`classes` must be \"auto\" or an integer of at least 2".into(),
                span: v.span.clone(),
                label: "expected \"auto\" or a class count".into(),
                help: None,
            });
            None
        }
    }
}

fn transfer(r: &ParamReader<'_>) -> Option<TransferConfig> {
    let strategy = r
        .choice("strategy", &["auto", "linear-probe", "partial", "full"])
        .map_or_else(|| "auto".to_owned(), |s| s.value);
    let backbone_lr = r.float("backbone-lr").map_or(1.0, |v| v.value);
    let reinit = r
        .str_list("reinit")
        .into_iter()
        .map(|m| normalise(&m.value))
        .collect();
    Some(TransferConfig {
        classes: classes(r)?,
        strategy,
        backbone_lr,
        adapt_channels: r.bool("adapt-channels").is_some_and(|v| v.value),
        reinit,
    })
}

/// The model config: from `model = {...}` unless it comes from `from`.
fn model_config(r: &ParamReader<'_>, from: Option<&Spanned<String>>) -> Option<ModelConfig> {
    let model_is_table = r
        .raw("model")
        .is_some_and(|m| matches!(m.kind, ValueKind::Table(_)));
    if let (Some(f), true) = (from, model_is_table) {
        r.error(Diagnostic {
            message: format!(
                "`model` is set, but the model comes from `from = \"{}\"`",
                f.value
            ),
            span: r.raw("model").and_then(|m| m.span.clone()),
            label: "remove this".into(),
            help: None,
        });
        return None;
    }
    // With an upstream model, the worker reads the real config from it;
    // the default only fills the struct.
    if from.is_some() {
        return Some(ModelConfig::resnet(10));
    }
    model(r)
}

/// Builds a `fine-tune` stage from its params.
pub fn build(cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let data = dataset_ref(r, "data", true);
    let val = dataset_ref(r, "val", false);
    // `model = "stage"` names the upstream model (as `from` does);
    // `model = { ... }` configures a network for `init` or from scratch.
    let from = match r.raw("model").map(|v| &v.kind) {
        Some(ValueKind::Str(_)) => r.str("model"),
        _ => r.str("from"),
    };
    let init = r.str("init");
    if let (Some(_), Some(i)) = (&from, &init) {
        r.error(Diagnostic {
            message: "set `from` (an upstream model) or `init` (a weights file), not both".into(),
            span: i.span.clone(),
            label: "conflicts with `from`".into(),
            help: None,
        });
        return None;
    }
    let mut config = train_config(r, model_config(r, from.as_ref()));
    let transfer = transfer(r);
    let data = data?;
    if let Some(c) = &mut config {
        c.transfer = Some(transfer?);
    }
    let mut refs = Vec::new();
    let training = Training::new(cx, r, config, data, val, &mut refs);
    let from = from.map(|f| {
        let output = output_ref(f, "model");
        let input = input_name(&output.value);
        refs.push(output);
        input
    });
    let deps: Vec<Spanned<String>> = init.iter().cloned().collect();
    let stage = FineTune {
        training: training?,
        from,
        init: init.map(|i| i.value),
    };
    Some(StageDecl {
        stage: Box::new(stage),
        refs,
        deps,
        outs: vec![],
        outputs: vec!["model".into()],
        uses: vec![],
    })
}

impl Kind for FineTune {
    const NAME: &'static str = "fine-tune";
    const VERSION: u32 = 3;
    const NOT_IN_KEY: &'static [&'static str] = &["device"];

    fn run(&self, cx: &StageContext, inputs: &Inputs) -> Result<StageOutputs, StageError> {
        let model = self.from.as_deref().map(|m| inputs.tree(m)).transpose()?;
        let init = self.init.as_ref().map(|i| cx.workdir.join(i));
        let out = cx.scratch.join("model");
        let job = self.training.job(cx, inputs, model, init, out.clone())?;
        run_training(cx, &WorkerJob::FineTune(job), &out)
    }
}
