//! The data stages through the real binary: ingest writes dataset outputs
//! into the cache, reruns are cached, changed data reruns, and `tuneflow
//! fixtures` builds the corpora (with espeak-ng and sox).

use tuneflow_stages::data::{recordio, wav};

use crate::harness::Fixture;

fn tone(freq: f64) -> Vec<u8> {
    let s: Vec<i16> = (0..3200)
        .map(|i| (2000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 16000.0).sin()) as i16)
        .collect();
    wav::encode(16000, &s)
}

fn png(shade: u8) -> Vec<u8> {
    let img = image::GrayImage::from_fn(12, 12, |x, y| {
        image::Luma([shade.wrapping_add((x + y) as u8)])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

const PIPELINE: &str = r#"
[stage.speakers]
kind = "ingest"
format = "wav-folder"
path = "data/wavs"
features = { kind = "fbank", bins = 16 }
split = { val = 0.5 }

[stage.faces]
kind = "ingest"
format = "insightface-rec"
path = "data/rec"
size = 8
channels = 1

[stage.report]
kind = "command"
cmd = "echo ready > ready.txt"
after = ["faces.train", "speakers.val"]
outs = ["ready.txt"]
"#;

fn data_fixture() -> Fixture {
    let f = Fixture::new();
    f.write("p.toml", PIPELINE);
    for s in 0..2 {
        for u in 0..2 {
            let path = f.path(&format!("data/wavs/spk{s}/{u}.wav"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, tone(300.0 + 200.0 * f64::from(s) + f64::from(u))).unwrap();
        }
    }
    std::fs::create_dir_all(f.path("data/rec")).unwrap();
    let images: Vec<(u32, Vec<u8>)> = (0..6).map(|i| (i % 2, png(i as u8 * 30))).collect();
    recordio::write_insightface(&f.path("data/rec"), &images, (12, 12), false).unwrap();
    f
}

#[test]
fn ingest_runs_caches_and_reruns_on_changed_data() {
    let f = data_fixture();
    let first = f.run_ok("p.toml", &[]);
    assert_eq!(first.stages("stage-finished").len(), 3, "{}", first.stdout);
    let second = f.run_ok("p.toml", &[]);
    assert_eq!(second.stages("stage-cached").len(), 3);
    std::fs::write(f.path("data/wavs/spk1/0.wav"), tone(999.0)).unwrap();
    let third = f.run_ok("p.toml", &[]);
    assert_eq!(third.stages("stage-finished"), ["speakers", "report"]);
    let verify = f.tuneflow(&["cache", "verify", "p.toml"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
}

#[test]
fn ingest_failure_names_the_bad_file() {
    let f = data_fixture();
    std::fs::write(
        f.path("data/wavs/spk0/1.wav"),
        wav::encode(8000, &[0; 4000]),
    )
    .unwrap();
    let r = f.tuneflow(&["run", "--json", "p.toml", "--keep-going"]);
    assert_eq!(r.code, 1);
    let failed: Vec<_> = r
        .events()
        .into_iter()
        .filter(|e| e["event"] == "stage-failed")
        .collect();
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("spk0/1.wav") && error.contains("8000 Hz"),
        "{error}"
    );
    assert_eq!(r.stages("stage-finished"), ["faces"]);
}

#[test]
fn fixtures_build_corpora_that_ingest_reads() {
    let f = Fixture::new();
    let args = [
        "fixtures",
        "--out",
        "fx",
        "--pretrain-speakers",
        "3",
        "--pretrain-utterances",
        "2",
        "--target-speakers",
        "2",
        "--target-utterances",
        "5",
        "--digits-per-class",
        "12",
    ];
    let r = f.tuneflow(&args);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let split = f.read("fx/speakers/target/iden_split.txt");
    assert_eq!(split.lines().count(), 10);
    // One training (enrolment) utterance per target speaker by default.
    assert_eq!(split.lines().filter(|l| l.starts_with("3 ")).count(), 8);
    assert!(f
        .read("fx/speakers/target/veri_test.txt")
        .lines()
        .any(|l| l.starts_with("1 ")));
    // Rendering is deterministic: a second build in a fresh folder gives
    // the same bytes (espeak-ng is bit-exact, and sox runs with -D).
    let again = Fixture::new();
    assert_eq!(again.tuneflow(&args).code, 0);
    let wav = "speakers/pretrain/wav/id10001/v00/00001.wav";
    assert_eq!(
        std::fs::read(f.path(&format!("fx/{wav}"))).unwrap(),
        std::fs::read(again.path(&format!("fx/{wav}"))).unwrap()
    );
    // Every target speaker keeps at least one test utterance.
    let bad = f.tuneflow(&["fixtures", "--out", "fx2", "--target-train", "10"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--target-train 10") && bad.stderr.contains("--target-utterances 10"),
        "{}",
        bad.stderr
    );
    assert!(!f.path("fx2").exists());
    // Idempotent and fast once built.
    let t = std::time::Instant::now();
    assert!(f.tuneflow(&args).stderr.contains("up to date"));
    assert!(t.elapsed().as_secs_f64() < 1.0);
    f.write(
        "fx/p.toml",
        "[stage.pre]\nkind = \"ingest\"\nformat = \"voxceleb\"\npath = \"speakers/pretrain\"\n\
         [stage.digits]\nkind = \"ingest\"\nformat = \"insightface-rec\"\npath = \"digits/rec-5-9\"\nsize = 28\nchannels = 1\n\
         [stage.images]\nkind = \"ingest\"\nformat = \"image-folder\"\npath = \"digits/images\"\nsize = 28\nchannels = 1\n",
    );
    let r = f.tuneflow(&["run", "--json", "fx/p.toml"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.stages("stage-finished").len(), 3);
}

fn outputs(r: &crate::harness::Run, stage: &str) -> serde_json::Value {
    r.events()
        .into_iter()
        .find(|e| e["stage"] == stage && e.get("outputs").is_some())
        .unwrap()["outputs"]
        .clone()
}

const AUGMENT: &str = r#"
[stage.aug]
kind = "augment"
data = "speakers.train"
ops = [{ op = "segment-crop", frames = 8 }, { op = "spec-augment", freq = 3, time = 2 }, { op = "noise", snr = 20 }]

[stage.copies]
kind = "augment"
data = "faces"
ops = [{ op = "flip" }, { op = "random-crop", padding = 1 }, { op = "rotate", degrees = 10 }, { op = "color-jitter", brightness = 0.2, contrast = 0.2 }]
copies = 2
"#;

#[test]
fn augment_passes_data_through_and_materializes_deterministically() {
    let a = data_fixture();
    a.write("p.toml", &format!("{PIPELINE}{AUGMENT}"));
    let first = a.run_ok("p.toml", &[]);
    // Without copies the dataset output is the input, by digest.
    assert_eq!(
        outputs(&first, "aug")["dataset"],
        outputs(&first, "speakers")["train"]
    );
    let b = data_fixture();
    b.write("p.toml", &format!("{PIPELINE}{AUGMENT}"));
    let other = b.run_ok("p.toml", &[]);
    assert_eq!(
        outputs(&first, "copies"),
        outputs(&other, "copies"),
        "same seed, same bytes"
    );
    let reseeded = b.run_ok("p.toml", &["--set", "pipeline.seed=8"]);
    assert_ne!(
        outputs(&reseeded, "copies")["dataset"],
        outputs(&first, "copies")["dataset"]
    );
    assert_eq!(a.run_ok("p.toml", &[]).stages("stage-cached").len(), 5);
}

#[test]
fn augment_rejects_ops_for_the_other_modality() {
    let f = data_fixture();
    f.write("p.toml", &format!("{PIPELINE}\n[stage.bad]\nkind = \"augment\"\ndata = \"speakers\"\nops = [{{ op = \"flip\" }}]\n"));
    let r = f.tuneflow(&["run", "p.toml", "--keep-going"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("op `flip` does not apply to fbank data"),
        "{}",
        r.stderr
    );
}

#[test]
fn ingesting_a_large_recordio_keeps_memory_bounded() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.path("rec")).unwrap();
    // 200,000 records of about 1.2 KB (incompressible 32x32 noise PNGs).
    let mut rng = tuneflow_stages::rng::Rng::new(5);
    let mut w =
        recordio::RecordWriter::create(&f.path("rec/train.rec"), &f.path("rec/train.idx")).unwrap();
    let n = 200_000u64;
    for key in 0..n {
        let px: Vec<u8> = (0..32 * 32).map(|_| rng.next_u64() as u8).collect();
        let mut png = Vec::new();
        image::GrayImage::from_raw(32, 32, px)
            .unwrap()
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let header = recordio::IrHeader {
            flag: 0,
            label: (key % 1000) as f32,
            id: key,
            id2: 0,
            labels: vec![],
        };
        w.write(key, &recordio::pack(&header, &png)).unwrap();
    }
    w.finish().unwrap();
    std::fs::write(f.path("rec/property"), "1000,32,32\n").unwrap();
    let rec_bytes = std::fs::metadata(f.path("rec/train.rec")).unwrap().len();
    f.write("p.toml", "[stage.big]\nkind = \"ingest\"\nformat = \"insightface-rec\"\npath = \"rec\"\nsize = 8\nchannels = 1\n");
    // The runner reports its own VmHWM: getrusage's ru_maxrss would include
    // the test harness's memory from before the child's exec.
    let r = f.run_ok("p.toml", &[]);
    let done = r.events().into_iter().last().unwrap();
    let peak = done["peak_rss_kib"]
        .as_u64()
        .expect("run-finished reports peak_rss_kib")
        * 1024;
    assert!(rec_bytes > 200 << 20, "the file must be large: {rec_bytes}");
    // What the runner itself takes (code, sled, threads), measured on a
    // trivial pipeline, is not the ingest's doing.
    f.write(
        "idle.toml",
        "[stage.idle]\nkind = \"command\"\ncmd = \"true\"\n",
    );
    let idle = f
        .run_ok("idle.toml", &[])
        .events()
        .into_iter()
        .last()
        .unwrap()["peak_rss_kib"]
        .as_u64()
        .unwrap()
        * 1024;
    let grew = peak.saturating_sub(idle);
    assert!(
        grew < rec_bytes / 3,
        "ingest grew the peak RSS by {} MB (to {} MB), not far below the file size {} MB",
        grew >> 20,
        peak >> 20,
        rec_bytes >> 20
    );
}
