//! The `ingest` kind: reads a dataset on disk into a dataset artifact
//! (see `data::dataset`) with `train`, `val` and `test` split outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::data::dataset::{DatasetInfo, DatasetWriter};
use crate::data::decode::{
    self, ImageLoader, ImageSpec, DEFAULT_DECODE_MEMORY, DEFAULT_MAX_PIXELS,
};
use crate::data::error::{DataError, Skipped};
use crate::data::fbank::{Fbank, FbankOptions, Window};
use crate::data::recordio::{unpack, RecordReader};
use crate::data::sources::{self, Locator, SourceItem, FORMATS};
use crate::params::{ParamReader, Spanned};
use crate::rng::{hash_str, Rng};
use crate::stage::{BuildContext, Inputs, Kind, StageContext, StageDecl, StageError, StageOutputs};

/// Items decoded at once; bounds memory on any dataset size.
const CHUNK: usize = 512;

/// A configured `ingest` stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Ingest {
    format: String,
    path: String,
    image: ImageSpec,
    max_pixels: u64,
    fbank: Option<(FbankOptions, bool)>,
    sample_rate: u32,
    val: f64,
    test: f64,
    classes: Option<u64>,
    max_per_class: Option<u64>,
    min_per_class: u64,
    skip_errors: bool,
    trials: Option<String>,
    keep_waveform: bool,
    seed: i64,
    name: String,
}

fn is_audio(format: &str) -> bool {
    matches!(format, "voxceleb" | "wav-folder")
}

/// Builds an `ingest` stage from its params.
pub fn build(cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<StageDecl> {
    let (stage, path) = configure(cx, r)?;
    let waveform = stage.keep_waveform.then_some("waveform");
    Some(StageDecl {
        stage: Box::new(stage),
        refs: Vec::new(),
        deps: vec![path],
        outs: Vec::new(),
        outputs: ["dataset", "train", "val", "test"]
            .iter()
            .chain(waveform.iter())
            .map(|s| s.to_string())
            .collect(),
        uses: vec![],
    })
}

/// Reads the params into a typed stage and its dataset path.
fn configure(cx: &BuildContext<'_>, r: &ParamReader<'_>) -> Option<(Ingest, Spanned<String>)> {
    let format = r.required_str("format", FORMATS.join(" | ").as_str());
    let format = format.filter(|f| {
        let ok = FORMATS.contains(&f.value.as_str());
        if !ok {
            r.error(crate::params::Diagnostic {
                message: format!("unknown format `{}`", f.value),
                span: f.span.clone(),
                label: format!("expected one of: {}", FORMATS.join(", ")),
                help: crate::params::suggest(&f.value, FORMATS.iter().copied())
                    .map(|s| format!("did you mean `{s}`?")),
            });
        }
        ok
    });
    let path = r.required_str("path", "the dataset's folder");
    let mnist = format.as_ref().is_some_and(|f| f.value == "mnist-json");
    let size = r
        .uint("size")
        .map_or(if mnist { 28 } else { 112 }, |s| s.value as u32);
    let channels = r
        .uint("channels")
        .map_or(if mnist { 1 } else { 3 }, |c| c.value as u32);
    if channels != 1 && channels != 3 {
        r.error(crate::params::Diagnostic {
            message: format!("`channels` must be 1 or 3, not {channels}"),
            span: None,
            label: String::new(),
            help: None,
        });
    }
    let max_pixels = r.uint("max-pixels").map_or(DEFAULT_MAX_PIXELS, |m| m.value);
    if max_pixels == 0 {
        r.error(crate::params::Diagnostic {
            message: "`max-pixels` must be at least 1".into(),
            span: r.raw("max-pixels").and_then(|v| v.span.clone()),
            label: "expected 1 or more".into(),
            help: None,
        });
    }
    let features = r.nested("features", read_features).flatten();
    let cmn = r.bool("cmn").is_none_or(|c| c.value);
    let sample_rate = r.uint("sample-rate").map_or(16000, |s| s.value as u32);
    let split = r.nested("split", |s| {
        (
            s.float("val").map(|v| v.value),
            s.float("test").map(|v| v.value),
        )
    });
    let (val, test) = split.map_or((Some(0.1), None), |(v, t)| (v, t));
    let classes = r.uint("classes").map(|c| c.value);
    let max_per_class = r.uint("max-per-class").map(|c| c.value);
    let min_per_class = r.uint("min-per-class").map_or(0, |c| c.value);
    let on_error = r
        .choice("on-error", &["fail", "skip"])
        .map_or("fail".to_owned(), |s| s.value);
    let trials = r.str("trials").map(|t| t.value);
    let keep_waveform = r.bool("keep-waveform").is_some_and(|k| k.value);
    let audio = format.as_ref().is_some_and(|f| is_audio(&f.value));
    let (format, path) = (format?, path?);
    let fbank = is_audio(&format.value).then(|| {
        (
            features.unwrap_or_else(|| FbankOptions {
                num_bins: 40,
                ..Default::default()
            }),
            cmn,
        )
    });
    let stage = Ingest {
        format: format.value,
        path: crate::paths::normalize_dep(&path.value).unwrap_or(path.value.clone()),
        image: ImageSpec { size, channels },
        max_pixels,
        fbank,
        sample_rate,
        val: val.unwrap_or(0.0),
        test: test.unwrap_or(0.0),
        classes,
        max_per_class,
        min_per_class,
        skip_errors: on_error == "skip",
        trials,
        keep_waveform: keep_waveform && audio,
        seed: cx.seed,
        name: cx.name.to_owned(),
    };
    Some((stage, path))
}

fn read_features(f: &ParamReader<'_>) -> Option<FbankOptions> {
    let kind = f.required_choice("kind", &["fbank"]);
    let bins = f.uint("bins").map_or(40, |b| b.value as usize);
    let window = match f
        .choice("window", &["povey", "hamming", "hann"])
        .map(|w| w.value)
    {
        Some(w) if w == "hamming" => Window::Hamming,
        Some(w) if w == "hann" => Window::Hann,
        _ => Window::Povey,
    };
    kind?;
    Some(FbankOptions {
        num_bins: bins,
        window,
        ..Default::default()
    })
}

impl Kind for Ingest {
    const NAME: &'static str = "ingest";
    // 3: the readers of issue #11 (symlinks, empty inputs, RecordIO checks
    // and skips, max-pixels) give other results for the same inputs.
    const VERSION: u32 = 3;

    fn run(&self, cx: &StageContext, _inputs: &Inputs) -> Result<StageOutputs, StageError> {
        let root = cx.workdir.join(&self.path);
        let listing = sources::list_with(&self.format, &root, self.skip_errors)?;
        let items = self.select(listing.items);
        let classes: Vec<String> = {
            let mut c: Vec<String> = items.iter().map(|i| i.class.clone()).collect();
            c.dedup();
            c
        };
        let class_index: BTreeMap<&str, u32> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as u32))
            .collect();
        let dir = cx.scratch.join("dataset");
        let mut writers = Writers::create(&cx.scratch, self.keep_waveform)?;
        let decoder = Decoder::new(self, &root)?;
        let (kept, mut skipped, mut skipped_count) = self.decode_all(
            cx,
            listing.skipped,
            &items,
            &decoder,
            &class_index,
            &mut writers,
        )?;
        let writer = writers.dataset;
        let trial_count =
            self.write_trials(&root, &kept, &dir, &mut skipped, &mut skipped_count)?;
        let splits = self.splits(&kept);
        let (kind, shape) = match &self.fbank {
            Some((o, _)) => ("fbank", vec![o.num_bins as u32]),
            None => (
                "image",
                vec![self.image.channels, self.image.size, self.image.size],
            ),
        };
        let info = DatasetInfo {
            skipped: skipped_count,
            skipped_examples: skipped.clone(),
            trials: trial_count,
            ..DatasetInfo::new(kind, shape, classes)
        };
        let split_dirs = writer
            .finish(info, &splits)
            .map_err(|e| StageError::io("write", &dir, e))?;
        let mut paths = vec![("dataset".to_owned(), dir)];
        paths.extend(split_dirs);
        if let Some(w) = writers.waveform {
            let wave_dir = cx.scratch.join("waveform");
            let info = DatasetInfo {
                kind: "waveform".into(),
                dtype: "i16".into(),
                shape: vec![1],
                ..info_for_waveform(&paths[0].1)?
            };
            w.finish(info, &[])
                .map_err(|e| StageError::io("write", &wave_dir, e))?;
            paths.push(("waveform".to_owned(), wave_dir));
        }
        let summary = serde_json::json!({
            "items": kept.len(),
            "skipped": skipped_count,
            "skipped_examples": skipped,
            "splits": splits.iter().map(|(n, v)| (n.clone(), v.len())).collect::<BTreeMap<_, _>>(),
        });
        Ok(StageOutputs {
            paths,
            summary,
            reexports: Vec::new(),
        })
    }
}

/// The artifact writers of one run: the dataset, and the raw waveforms
/// when `keep-waveform` is set.
struct Writers {
    dataset: DatasetWriter,
    waveform: Option<DatasetWriter>,
}

impl Writers {
    fn create(scratch: &Path, keep_waveform: bool) -> Result<Self, StageError> {
        let create = |name: &str| {
            let dir = scratch.join(name);
            DatasetWriter::create(&dir).map_err(|e| StageError::io("create", &dir, e))
        };
        Ok(Self {
            dataset: create("dataset")?,
            waveform: if keep_waveform {
                Some(create("waveform")?)
            } else {
                None
            },
        })
    }
}

/// The waveform artifact's info: the dataset's, read back from its folder.
fn info_for_waveform(dataset: &Path) -> Result<DatasetInfo, StageError> {
    let path = dataset.join("dataset.json");
    let bytes = std::fs::read(&path).map_err(|e| StageError::io("read", &path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| StageError::Other(e.to_string()))
}

impl Ingest {
    /// Decodes every item on all cores, in bounded chunks, streaming them
    /// into the writers; returns the kept items and what was skipped (on
    /// top of what listing skipped).
    fn decode_all<'a>(
        &self,
        cx: &StageContext,
        listed: Skipped,
        items: &'a [SourceItem],
        decoder: &Decoder,
        class_index: &BTreeMap<&str, u32>,
        writers: &mut Writers,
    ) -> Result<(Vec<&'a SourceItem>, Vec<String>, u64), StageError> {
        let mut kept = Vec::with_capacity(items.len());
        let mut skips = listed;
        let write_err = |e| StageError::io("write", cx.scratch.join("dataset"), e);
        for chunk in items.chunks(CHUNK) {
            if cx.cancel.is_cancelled() {
                return Err(StageError::Cancelled);
            }
            let decoded: Vec<Result<Decoded, DataError>> =
                chunk.par_iter().map(|item| decoder.decode(item)).collect();
            for (item, result) in chunk.iter().zip(decoded) {
                match result {
                    Ok(d) => {
                        let label = class_index[item.class.as_str()];
                        writers
                            .dataset
                            .push(&item.id, label, d.frames, &d.bytes)
                            .map_err(write_err)?;
                        if let (Some(w), Some(wave)) = (writers.waveform.as_mut(), d.wave) {
                            w.push(&item.id, label, (wave.len() / 2) as u32, &wave)
                                .map_err(write_err)?;
                        }
                        kept.push(item);
                    }
                    Err(why) if self.skip_errors => {
                        skips.add(1, &format_args!("{}: {why}", item.id));
                    }
                    Err(why) => return Err(why.into()),
                }
            }
        }
        Ok((kept, skips.examples, skips.count))
    }

    /// Applies `min-per-class`, `classes` and `max-per-class`, in that order.
    fn select(&self, items: Vec<SourceItem>) -> Vec<SourceItem> {
        let mut by_class: BTreeMap<String, Vec<SourceItem>> = BTreeMap::new();
        for item in items {
            by_class.entry(item.class.clone()).or_default().push(item);
        }
        by_class
            .into_values()
            .filter(|v| v.len() as u64 >= self.min_per_class)
            .take(self.classes.map_or(usize::MAX, |c| c as usize))
            .flat_map(|mut v| {
                v.truncate(self.max_per_class.map_or(usize::MAX, |m| m as usize));
                v
            })
            .collect()
    }

    /// Writes `trials.txt` (`label i j`, indices of kept items). A trial
    /// naming an item that is not in the dataset fails the stage, or with
    /// `on-error = "skip"` is dropped and counted.
    fn write_trials(
        &self,
        root: &Path,
        kept: &[&SourceItem],
        dir: &Path,
        skipped: &mut Vec<String>,
        count: &mut u64,
    ) -> Result<u64, StageError> {
        let list = self.trials.as_ref().map(|t| root.join(t));
        let trials = sources::trials(&self.format, root, list.as_deref())?;
        if trials.is_empty() {
            return Ok(0);
        }
        let index: BTreeMap<&str, usize> = kept
            .iter()
            .enumerate()
            .map(|(i, item)| (item.id.as_str(), i))
            .collect();
        let mut out = String::new();
        let mut written = 0;
        for t in &trials {
            match (index.get(t.a.as_str()), index.get(t.b.as_str())) {
                (Some(a), Some(b)) => {
                    out.push_str(&format!("{} {a} {b}\n", u8::from(t.same)));
                    written += 1;
                }
                _ => {
                    let missing = if index.contains_key(t.a.as_str()) {
                        &t.b
                    } else {
                        &t.a
                    };
                    let why = format!(
                        "{}: names `{missing}`, which is not in the dataset",
                        t.origin
                    );
                    if !self.skip_errors {
                        return Err(StageError::Other(why));
                    }
                    *count += 1;
                    if skipped.len() < crate::data::error::SKIP_EXAMPLES {
                        skipped.push(why);
                    }
                }
            }
        }
        let path = dir.join("trials.txt");
        std::fs::write(&path, out).map_err(|e| StageError::io("write", &path, e))?;
        Ok(written)
    }

    /// The format's splits when it has them; else seeded and stratified:
    /// per class, a shuffled order gives `test` first, then `val`.
    fn splits(&self, kept: &[&SourceItem]) -> Vec<(String, Vec<u32>)> {
        let mut out: BTreeMap<&str, Vec<u32>> = ["train", "val", "test"]
            .iter()
            .map(|s| (*s, Vec::new()))
            .collect();
        if kept.iter().any(|i| i.split.is_some()) {
            for (i, item) in kept.iter().enumerate() {
                out.get_mut(item.split.unwrap_or("train"))
                    .expect("known split")
                    .push(i as u32);
            }
        } else {
            let mut by_class: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
            for (i, item) in kept.iter().enumerate() {
                by_class
                    .entry(item.class.as_str())
                    .or_default()
                    .push(i as u32);
            }
            for (class, mut members) in by_class {
                Rng::from_parts(&[self.seed as u64, hash_str(&self.name), hash_str(class)])
                    .shuffle(&mut members);
                let n = members.len() as f64;
                let test = (n * self.test).round() as usize;
                let val = ((n * self.val).round() as usize).min(members.len() - test);
                out.get_mut("test").expect("known").extend(&members[..test]);
                out.get_mut("val")
                    .expect("known")
                    .extend(&members[test..test + val]);
                out.get_mut("train")
                    .expect("known")
                    .extend(&members[test + val..]);
            }
        }
        out.into_iter()
            .map(|(name, mut v)| {
                v.sort_unstable();
                (name.to_owned(), v)
            })
            .collect()
    }
}

/// One decoded item: its bytes, frames (1 for images), and the raw 16-bit
/// samples when the waveform is kept.
struct Decoded {
    bytes: Vec<u8>,
    frames: u32,
    wave: Option<Vec<u8>>,
}

impl Decoded {
    fn image(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            frames: 1,
            wave: None,
        }
    }
}

/// Decodes items of one format; shared read-only by the decoding threads.
struct Decoder {
    /// Images, under `max-pixels` and a memory budget for all threads.
    images: ImageLoader,
    fbank: Option<(Fbank, bool)>,
    rate: u32,
    /// One `.rec` reader shared by the decoding threads (positioned reads).
    rec: Option<RecordReader>,
    mnist: std::sync::Mutex<BTreeMap<u8, std::sync::Arc<Vec<f32>>>>,
    bin: Option<crate::data::pickle_bin::PairFile>,
    keep_wave: bool,
    root: PathBuf,
}

impl Decoder {
    fn new(stage: &Ingest, root: &Path) -> Result<Self, StageError> {
        Ok(Self {
            images: ImageLoader::new(stage.image, stage.max_pixels, DEFAULT_DECODE_MEMORY),
            fbank: stage.fbank.clone().map(|(o, cmn)| (Fbank::new(o), cmn)),
            rate: stage.sample_rate,
            rec: if stage.format == "insightface-rec" {
                Some(RecordReader::open_data(&root.join("train.rec"))?)
            } else {
                None
            },
            mnist: Default::default(),
            bin: if stage.format == "bin-pairs" {
                Some(sources::load_bin(root)?)
            } else {
                None
            },
            keep_wave: stage.keep_waveform,
            root: root.to_path_buf(),
        })
    }

    fn decode(&self, item: &SourceItem) -> Result<Decoded, DataError> {
        match &item.locator {
            Locator::File(path) => match &self.fbank {
                Some((fb, cmn)) => {
                    let bytes = crate::data::error::read_file(path)?;
                    let (bytes, frames, wave) =
                        decode::audio(&bytes, self.rate, fb, *cmn, self.keep_wave)
                            .map_err(|e| e.in_file(path))?;
                    Ok(Decoded {
                        bytes,
                        frames,
                        wave,
                    })
                }
                None => self.images.load_file(path).map(Decoded::image),
            },
            Locator::Record { key, offset } => {
                let reader = self
                    .rec
                    .as_ref()
                    .expect("record locators come from insightface-rec");
                let located = |e: crate::data::error::FormatError| DataError::Record {
                    path: reader.path().to_path_buf(),
                    record: *key,
                    offset: *offset,
                    message: e.to_string(),
                };
                let payload = reader.read_at(*key, *offset)?;
                let (_, jpeg) = unpack(&payload).map_err(located)?;
                self.images.load(jpeg).map(Decoded::image).map_err(located)
            }
            Locator::BinImage(i) => {
                let file = self.bin.as_ref().expect("bin locators come from bin-pairs");
                self.images
                    .load(&file.images[*i])
                    .map(Decoded::image)
                    .map_err(|e| e.in_item(&self.root, *i as u64))
            }
            Locator::Mnist { digit, index } => {
                let values = self.mnist_file(*digit)?;
                Ok(Decoded::image(decode::mnist_bytes(
                    &values[index * 784..(index + 1) * 784],
                    self.images.spec(),
                )))
            }
        }
    }

    fn mnist_file(&self, digit: u8) -> Result<std::sync::Arc<Vec<f32>>, DataError> {
        let mut cache = self.mnist.lock().expect("mnist lock");
        if let Some(v) = cache.get(&digit) {
            return Ok(v.clone());
        }
        let v = std::sync::Arc::new(sources::mnist_values(
            &self.root.join(format!("{digit}.json")),
        )?);
        cache.insert(digit, v.clone());
        Ok(v)
    }
}

#[cfg(test)]
#[path = "ingest_tests.rs"]
mod tests;
