//! The GPU benchmark of issue #14 (`scripts/gpu-bench.sh`), run on CPU at
//! its `--quick` sizes with the built binaries and the venv's torch: every
//! part runs, every table is printed whole, and the numbers are sane. The
//! GPU machine runs the same script at full size; this keeps it working.

use std::path::Path;

use crate::harness::{bin, python};

/// The Markdown headings the script prints, one per table.
const TABLES: &[&str] = &[
    "### Training samples/s",
    "### Details (medians)",
    "### Share of the matmul peak",
    "### The `pretrain` stage against the raw step rate",
];

/// Checks that every row of every Markdown table has the header's columns
/// and no cell is NaN or infinite; returns how many tables there are.
fn tables_are_whole(text: &str) -> usize {
    let mut tables = 0;
    let mut columns = None;
    for line in text.lines() {
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        let cells = line.matches('|').count();
        for cell in line.split('|') {
            let first = cell.split_whitespace().next().unwrap_or_default();
            assert!(
                !["nan", "inf", "-inf"].contains(&first.to_lowercase().as_str()),
                "a non-finite number: {line}"
            );
        }
        match columns {
            None => {
                columns = Some(cells);
                tables += 1;
            }
            Some(n) => assert_eq!(cells, n, "a row of another width: {line}"),
        }
    }
    tables
}

fn positive(v: &serde_json::Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "{what} = {x}");
    x
}

#[test]
fn the_gpu_benchmark_runs_quick_on_cpu_with_every_table() {
    let bins = Path::new(bin()).parent().unwrap();
    assert!(
        bins.join("tuneflow-torch").is_file(),
        "no tuneflow-torch beside {} (build the workspace)",
        bin()
    );
    let work = tempfile::tempdir().unwrap();
    let out_dir = work.path().join("out");
    let out = std::process::Command::new("bash")
        .arg(format!(
            "{}/scripts/gpu-bench.sh",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(bins)
        .args(["--device", "cpu", "--quick", "--out"])
        .arg(&out_dir)
        .arg("--work")
        .arg(work.path().join("work"))
        .env("PYTHON", python())
        .env_remove("OUT")
        .env_remove("TUNEFLOW_BIN")
        .env_remove("TUNEFLOW_REMOTE")
        .env_remove("TUNEFLOW_CACHE_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    for heading in TABLES {
        assert!(stdout.contains(heading), "no {heading:?} in:\n{stdout}");
    }
    assert_eq!(tables_are_whole(&stdout), TABLES.len(), "{stdout}");
    for line in ["machine: ", "torch: 2.11", "GPU: none (CPU run)"] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    assert!(
        stdout.contains("Parameter counts agree on every row."),
        "{stdout}"
    );
    // The same tables are written for the GPU machine to send back.
    let md = std::fs::read_to_string(out_dir.join("gpu-bench.md")).unwrap();
    assert_eq!(md.trim_end(), stdout.trim_end());

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("gpu-bench.json")).unwrap())
            .unwrap();
    assert_eq!(json["env"]["device"], "cpu");
    let bench = json["bench"].as_array().unwrap();
    assert_eq!(bench.len(), 4, "four configs");
    for rec in bench {
        let runs = rec["runs"].as_object().unwrap();
        assert_eq!(runs.len(), 4, "four rows: {rec}");
        for (row, rounds) in runs {
            for r in rounds.as_array().unwrap() {
                if r["impl"] == "tuneflow" {
                    // The worker ran what was asked, and its steps learn.
                    for key in ["precision", "layout", "optimizer"] {
                        assert_eq!(r[key], r["requested"][key], "{row}: {r}");
                    }
                    let (before, after) = (r["loss_start"].as_f64(), r["loss_end"].as_f64());
                    assert!(after < before, "{row}: the loss did not fall: {r}");
                }
                positive(&r["train_samples_per_s"], &format!("{row} train/s"));
                positive(&r["infer_samples_per_s"], &format!("{row} infer/s"));
                positive(&r["params"], &format!("{row} params"));
            }
        }
        positive(&rec["ratio"], "tuneflow best / PyTorch best");
        // PyTorch's best row ran as asked (fused SGD exists on CPU in
        // torch 2.11) and counted the FLOPs of a step.
        let best = &runs["PyTorch bf16 + channels_last + fused SGD"][0];
        assert_eq!(best["precision"], "bf16", "{best}");
        assert_eq!(best["layout"], "channels-last", "{best}");
        assert_eq!(best["optimizer"], "fused", "{best}");
        positive(&best["train_flops_per_sample"], "FLOPs per sample");
        positive(&best["matmul_peak_flops"], "matmul peak");
    }

    let pretrain = &json["pretrain"];
    assert!(!pretrain["epochs"].as_array().unwrap().is_empty());
    positive(&pretrain["stage_samples_per_s"], "stage samples/s");
    positive(&pretrain["raw_train_samples_per_s"], "raw bench samples/s");
    positive(&pretrain["ratio"], "stage / raw");
    let wait = pretrain["data_wait_share"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&wait), "data wait share {wait}");
}
