//! The pipeline front end (TOML with spans, `--set`, validation, rendering)
//! on mutated and random input, seeded from the real pipelines: it never
//! panics or aborts, and every rejection is a located diagnostic inside
//! the text, within a fixed time budget.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

const BUDGET: Duration = Duration::from_secs(4);

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut out = Vec::new();
    for dir in [root.clone(), root.join("invalid")] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                out.push(std::fs::read_to_string(p).unwrap());
            }
        }
    }
    out
}

fn mutate(text: &str, rng: &mut rand::rngs::StdRng) -> String {
    let mut b = text.as_bytes().to_vec();
    let pieces: &[&[u8]] = &[
        b"[",
        b"]",
        b"{",
        b"}",
        b"=",
        b"\"",
        b"'",
        b"\n",
        b".",
        b",",
        b"#",
        b"[[",
        b"\\u",
        b"kind = \"",
        b"stage.",
        b"${params.",
        b"9999999999999999999999",
        b"-0.0",
        b"nan",
        b"\xff",
        b"\x00",
        "ü".as_bytes(),
    ];
    for _ in 0..rng.gen_range(1..6) {
        if b.is_empty() {
            b.extend_from_slice(b"[stage.a]\n");
        }
        let at = rng.gen_range(0..b.len());
        match rng.gen_range(0..5) {
            0 => b[at] ^= 1 << rng.gen_range(0..8),
            1 => {
                let p = pieces[rng.gen_range(0..pieces.len())];
                b.splice(at..at, p.iter().copied());
            }
            2 => {
                let end = (at + rng.gen_range(1..40)).min(b.len());
                b.drain(at..end);
            }
            3 => b.truncate(at),
            _ => {
                let end = (at + rng.gen_range(1..200)).min(b.len());
                let copy = b[at..end].to_vec();
                b.splice(at..at, copy);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Plans `text`; a rejection must locate every problem inside the text and
/// render without panicking.
fn check(text: &str, sets: &[String]) {
    let path = Path::new("/fuzz/p.toml");
    let spec = tuneflow::pipeline::spec::PipelineSpec::parse(path, text.into());
    let result = spec.and_then(|mut s| {
        s.apply_overrides(sets)?;
        tuneflow::pipeline::plan::plan(&s)
    });
    if let Err(e) = result {
        if let tuneflow::pipeline::PipelineError::Invalid { diagnostics, .. } = &e {
            for d in diagnostics {
                if let Some(span) = &d.span {
                    assert!(
                        span.end <= text.len(),
                        "span {span:?} outside {} bytes",
                        text.len()
                    );
                }
            }
        }
        let rendered = e.render(90);
        assert!(rendered.contains("error"), "{rendered}");
    }
}

#[test]
fn mutated_pipelines_never_panic_and_errors_are_located() {
    let seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let seeds = seeds();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < BUDGET {
        let text = mutate(&seeds[rng.gen_range(0..seeds.len())], &mut rng);
        let sets: Vec<String> = match rng.gen_range(0..4) {
            0 => vec![format!("pipeline.seed={}", rng.gen::<i64>())],
            1 => vec!["params.x=a; rm -rf y".into()],
            _ => vec![],
        };
        let t = text.clone();
        let outcome = std::panic::catch_unwind(move || check(&t, &sets));
        assert!(outcome.is_ok(), "seed {seed}: a panic on:\n{text}");
        n += 1;
    }
    assert!(n > 50, "only {n} cases in the budget");
}

#[test]
fn deep_nesting_and_huge_files_are_errors_not_crashes() {
    for text in [
        format!("x = {}1{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("x = {}", "{ a = ".repeat(50_000)),
        "[stage.a]\nkind = \"command\"\ncmd = \"".to_owned() + &"x".repeat(2_000_000) + "\"\n",
        format!(
            "[stage.a]\nkind = \"command\"\ncmd = \"true\"\nouts = [{}]\n",
            "\"o\",".repeat(20_000)
        ),
    ] {
        let started = Instant::now();
        check(&text, &[]);
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
