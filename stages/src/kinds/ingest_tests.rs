//! Round trips through every reader: fixtures written with the project's
//! own writers, ingested, and read back from the dataset artifact.

use std::path::Path;

use super::*;
use crate::data::dataset::DatasetReader;
use crate::data::recordio::write_insightface;
use crate::data::wav;
use crate::params::{Table, Value, ValueKind};

fn png(side: u32, shade: u8) -> Vec<u8> {
    let img = image::GrayImage::from_fn(side, side + 2, |x, y| {
        image::Luma([shade.wrapping_add((x * 3 + y) as u8)])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn jpeg(shade: u8) -> Vec<u8> {
    let img =
        image::RgbImage::from_fn(16, 16, |x, _| image::Rgb([shade, x as u8 * 8, 255 - shade]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(
            &mut std::io::Cursor::new(&mut out),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    out
}

fn tone(freq: f64, n: usize) -> Vec<u8> {
    let s: Vec<i16> = (0..n)
        .map(|i| (3000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 16000.0).sin()) as i16)
        .collect();
    wav::encode(16000, &s)
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Builds an ingest stage from TOML params.
fn stage(toml: &str) -> Ingest {
    let doc: toml::Table = toml::from_str(toml).unwrap();
    let table = to_table(&doc);
    let r = ParamReader::new(&table, None);
    let built = configure(
        &BuildContext {
            name: "ingest",
            params: &Table::default(),
            seed: 7,
            stages: &[],
        },
        &r,
    );
    let errors = r.finish();
    assert!(errors.is_empty(), "{errors:?}");
    built.unwrap().0
}

fn to_value(v: &toml::Value) -> Value {
    let kind = match v {
        toml::Value::String(s) => ValueKind::Str(s.clone()),
        toml::Value::Integer(i) => ValueKind::Int(*i),
        toml::Value::Float(f) => ValueKind::Float(*f),
        toml::Value::Boolean(b) => ValueKind::Bool(*b),
        toml::Value::Array(a) => ValueKind::Array(a.iter().map(to_value).collect()),
        toml::Value::Table(t) => ValueKind::Table(to_table(t)),
        toml::Value::Datetime(d) => ValueKind::Str(d.to_string()),
    };
    Value { kind, span: None }
}

fn to_table(t: &toml::Table) -> Table {
    let mut out = Table::default();
    for (k, v) in t {
        out.set(k, to_value(v));
    }
    out
}

fn run(stage: &Ingest, dir: &Path) -> Result<(StageOutputs, DatasetReader), StageError> {
    let scratch = dir.join("scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let cx = StageContext {
        name: "ingest".into(),
        scratch: scratch.clone(),
        ..StageContext::for_test(dir)
    };
    let out = stage.run(&cx, &Inputs::default())?;
    let reader = DatasetReader::open_dir(&scratch.join("dataset")).unwrap();
    Ok((out, reader))
}

fn split(out: &StageOutputs, name: &str) -> DatasetReader {
    let (_, path) = out.paths.iter().find(|(n, _)| n == name).unwrap();
    DatasetReader::open_dir(path).unwrap()
}

#[test]
fn image_folder_reads_png_and_jpeg_resizes_and_splits_by_class() {
    let dir = tempfile::tempdir().unwrap();
    for (c, class) in ["cat", "dog"].iter().enumerate() {
        for i in 0..10u8 {
            let (name, bytes) = if i % 2 == 0 {
                (format!("{i}.png"), png(20, i * 10 + c as u8))
            } else {
                (format!("sub/{i}.JPG"), jpeg(i * 10))
            };
            write(&dir.path().join("data").join(class).join(name), &bytes);
        }
        write(
            &dir.path().join("data").join(class).join("notes.txt"),
            b"ignored",
        );
    }
    let s = stage("format = \"image-folder\"\npath = \"data\"\nsize = 8\nchannels = 3\nsplit = { val = 0.2, test = 0.1 }\n");
    let (out, all) = run(&s, dir.path()).unwrap();
    assert_eq!(all.info.classes, ["cat", "dog"]);
    assert_eq!((all.len(), all.info.shape.clone()), (20, vec![3, 8, 8]));
    assert_eq!(all.read(0).unwrap().len(), 3 * 8 * 8);
    let (train, val, test) = (
        split(&out, "train"),
        split(&out, "val"),
        split(&out, "test"),
    );
    assert_eq!((train.len(), val.len(), test.len()), (14, 4, 2));
    // Stratified: each class contributes equally to val and test.
    let labels = |r: &DatasetReader| (0..r.len()).map(|i| r.record(i).label).collect::<Vec<_>>();
    assert_eq!(labels(&val).iter().filter(|&&l| l == 0).count(), 2);
    assert_eq!(labels(&test), [0, 1]);
    // Deterministic: the same seed gives the same split.
    let (out2, _) = run(&s, dir.path()).unwrap();
    assert_eq!(split(&out2, "val").indices, val.indices);
}

#[test]
fn insightface_rec_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let images: Vec<(u32, Vec<u8>)> = (0..12).map(|i| (i % 4, jpeg(i as u8 * 20))).collect();
    std::fs::create_dir_all(dir.path().join("rec")).unwrap();
    write_insightface(&dir.path().join("rec"), &images, (16, 16), false).unwrap();
    let s = stage(
        "format = \"insightface-rec\"\npath = \"rec\"\nsize = 16\nclasses = 3\nmax-per-class = 2\n",
    );
    let (_, all) = run(&s, dir.path()).unwrap();
    assert_eq!(all.info.classes, ["000000", "000001", "000002"]);
    assert_eq!(all.len(), 6);
    let direct = crate::data::decode::image_bytes(
        &images[0].1,
        ImageSpec {
            size: 16,
            channels: 3,
        },
    )
    .unwrap();
    assert_eq!(all.read(0).unwrap(), direct);
}

#[test]
fn voxceleb_uses_iden_split_and_computes_fbank() {
    let dir = tempfile::tempdir().unwrap();
    let mut split = String::new();
    for (s, spk) in ["id10001", "id10002"].iter().enumerate() {
        for u in 0..3 {
            let rel = format!("{spk}/vid{u}/0000{u}.wav");
            write(
                &dir.path().join("vox/wav").join(&rel),
                &tone(200.0 + 300.0 * s as f64 + u as f64, 4000 + 160 * u),
            );
            split.push_str(&format!("{} {rel}\n", u + 1));
        }
    }
    write(&dir.path().join("vox/iden_split.txt"), split.as_bytes());
    let s = stage(
        "format = \"voxceleb\"\npath = \"vox\"\nfeatures = { kind = \"fbank\", bins = 24 }\n",
    );
    let (out, all) = run(&s, dir.path()).unwrap();
    assert_eq!(
        (all.info.kind.as_str(), all.info.shape.clone()),
        ("fbank", vec![24])
    );
    let frames = 1 + (4000 - 400) / 160;
    assert_eq!(all.record(0).frames as usize, frames);
    assert_eq!(all.read(0).unwrap().len(), frames * 24 * 4);
    assert_eq!(split_of(&out, "val"), vec![1, 4]);
    assert_eq!(split_of(&out, "test"), vec![2, 5]);
}

fn split_of(out: &StageOutputs, name: &str) -> Vec<u32> {
    split(out, name).indices
}

#[test]
fn mnist_json_reads_flat_and_nested_data() {
    let dir = tempfile::tempdir().unwrap();
    let digit = |v: f32| vec![v; 784];
    write(
        &dir.path().join("m/0.json"),
        serde_json::json!({ "data": [digit(0.0), digit(1.0)] })
            .to_string()
            .as_bytes(),
    );
    let flat: Vec<f32> = [digit(0.5), digit(0.25), digit(0.75)].concat();
    write(
        &dir.path().join("m/1.json"),
        serde_json::json!({ "data": flat }).to_string().as_bytes(),
    );
    for d in 2..10 {
        write(
            &dir.path().join(format!("m/{d}.json")),
            serde_json::json!({ "data": [digit(0.0)] })
                .to_string()
                .as_bytes(),
        );
    }
    let s = stage("format = \"mnist-json\"\npath = \"m\"\nsplit = { val = 0.0 }\n");
    let (_, all) = run(&s, dir.path()).unwrap();
    assert_eq!((all.len(), all.info.shape.clone()), (13, vec![1, 28, 28]));
    assert_eq!(all.read(1).unwrap(), vec![255u8; 784]);
    assert_eq!(all.read(3).unwrap(), vec![64u8; 784]);
}

#[test]
fn bad_files_fail_naming_the_file_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("img/a/ok.png"), &png(8, 1));
    write(&dir.path().join("img/a/broken.png"), &png(8, 1)[..30]);
    let fail = run(
        &stage("format = \"image-folder\"\npath = \"img\"\nsize = 4\n"),
        dir.path(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        fail.contains("img/a/broken.png") && fail.contains("cannot decode image"),
        "{fail}"
    );
    let (out, all) = run(
        &stage("format = \"image-folder\"\npath = \"img\"\nsize = 4\non-error = \"skip\"\n"),
        dir.path(),
    )
    .unwrap();
    assert_eq!((all.len(), all.info.skipped), (1, 1));
    assert_eq!(
        out.summary["skipped_examples"][0]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("a/broken.png")
    );

    write(
        &dir.path().join("wavs/s1/rate.wav"),
        &wav::encode(22050, &[0; 5000]),
    );
    let err = run(
        &stage("format = \"wav-folder\"\npath = \"wavs\"\n"),
        dir.path(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("rate.wav") && err.contains("22050 Hz"),
        "{err}"
    );

    std::fs::create_dir_all(dir.path().join("rec")).unwrap();
    write_insightface(&dir.path().join("rec"), &[(0, jpeg(1))], (16, 16), true).unwrap();
    let rec = dir.path().join("rec/train.rec");
    let mut bytes = std::fs::read(&rec).unwrap();
    let second = std::fs::read_to_string(dir.path().join("rec/train.idx"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .split('\t')
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap();
    bytes[second] = 0;
    std::fs::write(&rec, bytes).unwrap();
    let err = run(
        &stage("format = \"insightface-rec\"\npath = \"rec\"\n"),
        dir.path(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("train.rec") && err.contains("bad magic"),
        "{err}"
    );
}

#[test]
fn voxceleb_trial_list_is_resolved_and_missing_files_fail_or_skip() {
    let dir = tempfile::tempdir().unwrap();
    for spk in ["id1", "id2"] {
        for u in 0..2 {
            write(
                &dir.path().join(format!("vox/wav/{spk}/v/{u}.wav")),
                &tone(300.0, 2000),
            );
        }
    }
    write(
        &dir.path().join("vox/trials.txt"),
        b"1 id1/v/0.wav id1/v/1.wav\n0 id1/v/0.wav id2/v/1.wav\n1 id2/v/0.wav id2/v/9.wav\n",
    );
    let err = run(
        &stage("format = \"voxceleb\"\npath = \"vox\"\ntrials = \"trials.txt\"\n"),
        dir.path(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("trials.txt line 3: names `id2/v/9.wav`"),
        "{err}"
    );
    let (_, all) = run(
        &stage(
            "format = \"voxceleb\"\npath = \"vox\"\ntrials = \"trials.txt\"\non-error = \"skip\"\n",
        ),
        dir.path(),
    )
    .unwrap();
    assert_eq!((all.info.trials, all.info.skipped), (2, 1));
    let trials = std::fs::read_to_string(dir.path().join("scratch/dataset/trials.txt")).unwrap();
    assert_eq!(trials, "1 0 1\n0 0 3\n");
}

#[test]
fn lfw_pairs_and_bin_pairs_become_items_and_trials() {
    let dir = tempfile::tempdir().unwrap();
    for (name, n) in [("Ann_Lee", 1), ("Ann_Lee", 2), ("Bo_Wu", 1)] {
        write(
            &dir.path().join(format!("lfw/{name}/{name}_{n:04}.jpg")),
            &jpeg(n as u8 * 40),
        );
    }
    write(
        &dir.path().join("lfw/pairs.txt"),
        b"1\t1\nAnn_Lee\t1\t2\nAnn_Lee\t1\tBo_Wu\t1\n",
    );
    let (_, all) = run(
        &stage("format = \"lfw-pairs\"\npath = \"lfw\"\nsize = 8\n"),
        dir.path(),
    )
    .unwrap();
    assert_eq!(
        (all.len(), all.info.classes.clone(), all.info.trials),
        (3, vec!["Ann_Lee".to_owned(), "Bo_Wu".to_owned()], 2)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("scratch/dataset/trials.txt")).unwrap(),
        "1 0 1\n0 0 2\n"
    );

    let pairs = crate::data::pickle_bin::PairFile {
        images: vec![jpeg(1), jpeg(2), jpeg(3), jpeg(4)],
        same: vec![true, false],
    };
    write(
        &dir.path().join("lfw.bin"),
        &crate::data::pickle_bin::encode_py2(&pairs),
    );
    let (_, bin) = run(
        &stage("format = \"bin-pairs\"\npath = \"lfw.bin\"\nsize = 16\n"),
        dir.path(),
    )
    .unwrap();
    assert_eq!((bin.len(), bin.info.trials), (4, 2));
    assert_eq!(
        bin.read(1).unwrap(),
        crate::data::decode::image_bytes(
            &pairs.images[1],
            ImageSpec {
                size: 16,
                channels: 3
            }
        )
        .unwrap()
    );
}

#[test]
fn keep_waveform_stores_the_raw_samples() {
    let dir = tempfile::tempdir().unwrap();
    let wav_bytes = tone(440.0, 1600);
    write(&dir.path().join("w/spk/a.wav"), &wav_bytes);
    let (out, all) = run(
        &stage(
            "format = \"wav-folder\"\npath = \"w\"\nkeep-waveform = true\nsplit = { val = 0.0 }\n",
        ),
        dir.path(),
    )
    .unwrap();
    assert_eq!(all.len(), 1);
    let wave = split(&out, "waveform");
    assert_eq!(
        (
            wave.info.kind.as_str(),
            wave.info.dtype.as_str(),
            wave.record(0).frames
        ),
        ("waveform", "i16", 1600)
    );
    assert_eq!(wave.read(0).unwrap(), wav_bytes[44..].to_vec());
}

fn run_err(toml: &str, dir: &Path) -> String {
    run(&stage(toml), dir).err().unwrap().to_string()
}

/// Issue #11 (6): `max-pixels` refuses an image from its header, naming
/// it; it is a param of the key; skipped images are counted.
#[test]
fn max_pixels_refuses_large_images_and_enters_the_key() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("img/a/big.png"), &png(20, 1));
    write(&dir.path().join("img/a/small.png"), &png(4, 1));
    let toml = "format = \"image-folder\"\npath = \"img\"\nsize = 4\nmax-pixels = 100\n";
    let err = run_err(toml, dir.path());
    assert!(
        err.contains("img/a/big.png`: image is 20 x 22 = 440 pixels, more than `max-pixels` (100)"),
        "{err}"
    );
    let (_, all) = run(&stage(&format!("{toml}on-error = \"skip\"\n")), dir.path()).unwrap();
    assert_eq!((all.len(), all.info.skipped), (1, 1));
    let default = stage("format = \"image-folder\"\npath = \"img\"\nsize = 4\n");
    use crate::stage::Stage as _;
    assert_eq!(default.params()["max-pixels"], 50_000_000);
    assert_eq!(stage(toml).params()["max-pixels"], 100);
}

/// Writes a 6-image InsightFace package to `dir/rec`; returns the record
/// offsets from its index.
fn rec_package(dir: &Path) -> Vec<usize> {
    std::fs::create_dir_all(dir.join("rec")).unwrap();
    let images: Vec<(u32, Vec<u8>)> = (0..6).map(|i| (i % 2, jpeg(i as u8 * 30))).collect();
    write_insightface(&dir.join("rec"), &images, (16, 16), false).unwrap();
    std::fs::read_to_string(dir.join("rec/train.idx"))
        .unwrap()
        .lines()
        .map(|l| l.split('\t').nth(1).unwrap().parse().unwrap())
        .collect()
}

/// Issue #11 (8): `on-error = "skip"` did not skip a RecordIO record with
/// a bad magic or a bad length; it now leaves them out and counts them.
#[test]
fn skip_leaves_out_recordio_records_with_bad_magic_or_length() {
    let dir = tempfile::tempdir().unwrap();
    let at = rec_package(dir.path());
    let rec = dir.path().join("rec/train.rec");
    let mut bytes = std::fs::read(&rec).unwrap();
    bytes[at[2]] = 0;
    bytes[at[5] + 6] = 0x30;
    std::fs::write(&rec, bytes).unwrap();
    let toml = "format = \"insightface-rec\"\npath = \"rec\"\nsize = 8\n";
    let err = run_err(toml, dir.path());
    assert!(
        err.contains(&format!("train.rec` record 2 at byte {}: bad magic", at[2])),
        "{err}"
    );
    let (out, all) = run(&stage(&format!("{toml}on-error = \"skip\"\n")), dir.path()).unwrap();
    assert_eq!((all.len(), all.info.skipped), (4, 2));
    let examples = out.summary["skipped_examples"].to_string();
    assert!(
        examples.contains("record 2")
            && examples.contains("record 5")
            && examples.contains("length"),
        "{examples}"
    );
}

/// Issue #11 (11): folder links are not followed, and names read from
/// pair lists cannot leave the dataset folder.
#[test]
fn links_and_names_cannot_leave_the_dataset_folder() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..15u8 {
        write(
            &dir.path().join(format!("img/c{}/{i}.png", i % 2)),
            &png(4, i),
        );
    }
    std::os::unix::fs::symlink("..", dir.path().join("img/c0/loop")).unwrap();
    let toml = "format = \"image-folder\"\npath = \"img\"\nsize = 4\n";
    let err = run_err(toml, dir.path());
    assert!(
        err.contains("c0/loop`: symlink to the folder `..` is not followed"),
        "{err}"
    );
    let (_, all) = run(&stage(&format!("{toml}on-error = \"skip\"\n")), dir.path()).unwrap();
    assert_eq!((all.len(), all.info.skipped), (15, 1));

    write(&dir.path().join("lfw/Ann/Ann_0001.jpg"), &jpeg(1));
    write(
        &dir.path().join("lfw/pairs.txt"),
        b"1\t1\nAnn\t1\t1\n../../../etc\t1\tAnn\t1\n",
    );
    let err = run_err("format = \"lfw-pairs\"\npath = \"lfw\"\n", dir.path());
    assert!(
        err.contains("pairs.txt` line 3: name `../../../etc`"),
        "{err}"
    );
    // A person's folder that is a link out of the dataset folder.
    write(&dir.path().join("elsewhere/Bo_0001.jpg"), &jpeg(2));
    std::os::unix::fs::symlink("../elsewhere", dir.path().join("lfw/Bo")).unwrap();
    write(
        &dir.path().join("lfw/pairs.txt"),
        b"1\t1\nAnn\t1\t1\nAnn\t1\tBo\t1\n",
    );
    let err = run_err("format = \"lfw-pairs\"\npath = \"lfw\"\n", dir.path());
    assert!(
        err.contains("lfw/Bo/Bo_0001.jpg`: resolves outside the dataset folder"),
        "{err}"
    );

    std::fs::remove_file(dir.path().join("img/c0/loop")).unwrap();
    write(&dir.path().join("outside.txt"), b"1 c0/0.png c0/2.png\n");
    let err = run_err(&format!("{toml}trials = \"../outside.txt\"\n"), dir.path());
    assert!(
        err.contains("trial list is not inside the dataset folder"),
        "{err}"
    );
}

/// Issue #11 (17): empty inputs were 0-item datasets (or dropped a class)
/// with success; each is now an error naming the file or folder.
#[test]
fn empty_inputs_are_errors_naming_the_file_or_folder() {
    let dir = tempfile::tempdir().unwrap();
    rec_package(dir.path());
    std::fs::write(dir.path().join("rec/train.rec"), b"").unwrap();
    std::fs::write(dir.path().join("rec/train.idx"), b"").unwrap();
    let err = run_err("format = \"insightface-rec\"\npath = \"rec\"\n", dir.path());
    assert!(err.contains("rec/train.rec`: is empty"), "{err}");

    write(&dir.path().join("lfw/Ann/Ann_0001.jpg"), &jpeg(1));
    write(&dir.path().join("lfw/pairs.txt"), b"Ann\t1\t1\n");
    let err = run_err("format = \"lfw-pairs\"\npath = \"lfw\"\n", dir.path());
    assert!(
        err.contains("pairs.txt` line 1: expected a header"),
        "{err}"
    );

    write(&dir.path().join("img/a/0.png"), &png(4, 1));
    std::fs::create_dir_all(dir.path().join("img/b")).unwrap();
    let toml = "format = \"image-folder\"\npath = \"img\"\nsize = 4\n";
    let err = run_err(toml, dir.path());
    assert!(err.contains("img/b`: class folder has no files"), "{err}");
    let (_, all) = run(&stage(&format!("{toml}on-error = \"skip\"\n")), dir.path()).unwrap();
    assert_eq!(
        (all.len(), all.info.classes.clone(), all.info.skipped),
        (1, vec!["a".to_owned()], 1)
    );

    write(&dir.path().join("m/0.json"), b"{\"data\": []}");
    let err = run_err("format = \"mnist-json\"\npath = \"m\"\n", dir.path());
    assert!(err.contains("m/1.json`: is missing"), "{err}");

    let empty = crate::data::pickle_bin::PairFile {
        images: vec![],
        same: vec![],
    };
    write(
        &dir.path().join("e.bin"),
        &crate::data::pickle_bin::encode_py2(&empty),
    );
    let err = run_err("format = \"bin-pairs\"\npath = \"e.bin\"\n", dir.path());
    assert!(err.contains("e.bin`: holds no pairs"), "{err}");
}
