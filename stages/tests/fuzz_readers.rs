//! Property tests for the data readers (issue #11): mutated and random
//! bytes, seeded from real inputs the tests write, go into every reader
//! for a fixed time each. For every input: no panic (caught or not), no
//! abort (a stack overflow would end this binary), the peak of live bytes
//! stays within a multiple of the input's size plus a constant (a counting
//! global allocator measures it), and an error names the file and, where
//! the format has one, the place in it.
//!
//! `TUNEFLOW_FUZZ_SECS` (default 2) sets the seconds per reader and
//! `TUNEFLOW_FUZZ_SEED` the seed; an input that fails is saved and its
//! path printed. For longer runs, see `stages/fuzz/` (cargo-fuzz).

#[path = "fuzz_readers/alloc.rs"]
mod alloc;
#[path = "fuzz_readers/memory.rs"]
mod memory;
#[path = "fuzz_readers/mutate.rs"]
mod mutate;
#[path = "fuzz_readers/seeds.rs"]
mod seeds;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tuneflow_stages::data::decode::{self, ImageLoader, ImageSpec};
use tuneflow_stages::data::error::DataError;
use tuneflow_stages::data::fbank::{Fbank, FbankOptions};
use tuneflow_stages::data::insightface::list_package;
use tuneflow_stages::data::recordio::{unpack, RecordReader};
use tuneflow_stages::data::{lists, mnist, sources, wav};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// Cases every reader gets, however slow the machine.
const MIN_CASES: u64 = 40;

/// Panics seen by the hook, including those a reader catches itself.
static PANICS: AtomicU64 = AtomicU64::new(0);

fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

fn budget() -> Duration {
    let secs = std::env::var("TUNEFLOW_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn base_seed() -> u64 {
    std::env::var("TUNEFLOW_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e11_f10e)
}

/// What a reader may allocate: `factor` x input bytes + `slack`, and
/// the messages that may come without an offset or line (they are about
/// the whole file).
struct Bounds {
    factor: usize,
    slack: usize,
    whole_file: &'static [&'static str],
}

/// Whether `err` is located: it names one of `files`, and gives an offset,
/// record, line or item unless it is about the whole file.
fn located(err: &DataError, files: &[PathBuf], whole_file: &[&str]) -> bool {
    let names_file = files.iter().any(|f| err.path() == f)
        && files
            .iter()
            .any(|f| err.to_string().contains(&*f.to_string_lossy()));
    let placed = match err {
        DataError::Bytes { .. }
        | DataError::Record { .. }
        | DataError::Line { .. }
        | DataError::Item { .. } => true,
        DataError::File { message, .. } => whole_file.iter().any(|w| message.contains(w)),
        DataError::Io { .. } => false,
    };
    names_file && placed
}

/// Saves a failing input and stops the test with how to find it again.
fn fail(name: &str, seed: u64, case: u64, input: &[Vec<u8>], why: String) -> ! {
    let dir = std::env::temp_dir().join("tuneflow-fuzz");
    let _ = std::fs::create_dir_all(&dir);
    let saved: Vec<String> = input
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let path = dir.join(format!("{name}-{seed}-{case}-{i}.bin"));
            let _ = std::fs::write(&path, bytes);
            path.display().to_string()
        })
        .collect();
    panic!("{name}, seed {seed}, case {case}: {why}\ninput saved to {saved:?}");
}

/// Runs `read` on each seed (which must succeed), then on generated
/// inputs until the time budget is spent, checking every case.
fn fuzz(
    name: &str,
    bounds: &Bounds,
    seeds: &[Vec<Vec<u8>>],
    mut next: impl FnMut(&mut StdRng) -> Vec<Vec<u8>>,
    mut read: impl FnMut(&[Vec<u8>]) -> (Result<(), DataError>, Vec<PathBuf>),
) -> u64 {
    let _serial = alloc::serial();
    install_hook();
    for s in seeds {
        if let (Err(e), _) = read(s) {
            panic!("{name}: a valid seed fails: {e}");
        }
    }
    let seed = base_seed()
        ^ name
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
    let deadline = Instant::now() + budget();
    let mut case = 0;
    while case < MIN_CASES || Instant::now() < deadline {
        let input = next(&mut StdRng::seed_from_u64(seed.wrapping_add(case)));
        let size: usize = input.iter().map(Vec::len).sum();
        let panics = PANICS.load(Ordering::SeqCst);
        let (outcome, peak) = alloc::measure(|| catch_unwind(AssertUnwindSafe(|| read(&input))));
        let why = match outcome {
            Err(_) => Some("the reader panicked".to_owned()),
            Ok(_) if PANICS.load(Ordering::SeqCst) != panics => {
                Some("a panic happened (and was caught) inside the reader".to_owned())
            }
            Ok(_) if peak > bounds.factor * size + bounds.slack => Some(format!(
                "peak {peak} bytes for {size} input bytes (at most {} x + {})",
                bounds.factor, bounds.slack
            )),
            Ok((Err(e), files)) if !located(&e, &files, bounds.whole_file) => {
                Some(format!("error is not located: {e} ({e:?})"))
            }
            Ok(_) => None,
        };
        if let Some(why) = why {
            fail(name, seed, case, &input, why);
        }
        case += 1;
    }
    case
}

/// Writes `bytes` as `name` in `dir`.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("temp dir");
    path
}

#[test]
fn recordio_and_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let (rec, idx) = seeds::recordio(dir.path());
    let seeds = vec![vec![rec.clone(), idx.clone()], vec![rec.clone()]];
    let pair = seeds[..1].to_vec();
    let bounds = Bounds {
        factor: 32,
        slack: 2 << 20,
        whole_file: &[
            "is empty",
            "lists no records",
            "holds no readable image records",
            "unreadable records while scanning",
        ],
    };
    let next = |rng: &mut StdRng| match rng.gen_range(0..4) {
        0 => vec![mutate::mutate(rng, std::slice::from_ref(&rec)), idx.clone()],
        1 => vec![rec.clone(), mutate::mutate(rng, std::slice::from_ref(&idx))],
        2 => vec![mutate::mutate(rng, std::slice::from_ref(&rec))],
        _ => pair
            .iter()
            .flatten()
            .map(|f| mutate::mutate(rng, std::slice::from_ref(f)))
            .collect(),
    };
    fuzz("recordio", &bounds, &seeds, next, |files| {
        let rec = put(dir.path(), "train.rec", &files[0]);
        let idx = dir.path().join("train.idx");
        match files.get(1) {
            Some(text) => drop(put(dir.path(), "train.idx", text)),
            None => drop(std::fs::remove_file(&idx)),
        }
        let paths = vec![rec.clone(), idx.clone()];
        for skip in [false, true] {
            let read = || -> Result<(), DataError> {
                let listing = list_package(dir.path(), skip)?;
                let reader = RecordReader::open_data(&rec)?;
                for item in listing.items.iter().take(64) {
                    let payload = reader.read_at(item.key, item.offset)?;
                    unpack(&payload).map_err(|e| e.in_item(&rec, item.key))?;
                }
                Ok(())
            };
            if let Err(e) = read() {
                return (Err(e), paths);
            }
        }
        (Ok(()), paths)
    });
}

#[test]
fn bin_pickles() {
    let dir = tempfile::tempdir().unwrap();
    let seeds: Vec<Vec<Vec<u8>>> = seeds::pickles().into_iter().map(|p| vec![p]).collect();
    let flat: Vec<Vec<u8>> = seeds.iter().flatten().cloned().collect();
    let bounds = Bounds {
        factor: 8,
        slack: 2 << 20,
        whole_file: &["holds no pairs"],
    };
    let next = |rng: &mut StdRng| {
        if rng.gen_ratio(1, 3) {
            vec![mutate::opcodes(rng)]
        } else {
            vec![mutate::mutate(rng, &flat)]
        }
    };
    fuzz("pickle", &bounds, &seeds, next, |files| {
        let path = put(dir.path(), "lfw.bin", &files[0]);
        (sources::load_bin(&path).map(drop), vec![path])
    });
}

#[test]
fn wav_and_fbank() {
    let dir = tempfile::tempdir().unwrap();
    let seeds: Vec<Vec<Vec<u8>>> = seeds::wavs().into_iter().map(|w| vec![w]).collect();
    let flat: Vec<Vec<u8>> = seeds.iter().flatten().cloned().collect();
    let fbank = Fbank::new(FbankOptions {
        num_bins: 24,
        ..Default::default()
    });
    let bounds = Bounds {
        factor: 16,
        slack: 2 << 20,
        whole_file: &["shorter than one frame"],
    };
    let next = |rng: &mut StdRng| vec![mutate::mutate(rng, &flat)];
    fuzz("wav", &bounds, &seeds, next, |files| {
        let path = put(dir.path(), "a.wav", &files[0]);
        let read = || -> Result<(), DataError> {
            wav::read(&path, 16000)?;
            decode::audio(&files[0], 16000, &fbank, true, true).map_err(|e| e.in_file(&path))?;
            Ok(())
        };
        (read(), vec![path])
    });
}

#[test]
fn encoded_images() {
    let dir = tempfile::tempdir().unwrap();
    let seeds: Vec<Vec<Vec<u8>>> = seeds::images().into_iter().map(|i| vec![i]).collect();
    let flat: Vec<Vec<u8>> = seeds.iter().flatten().cloned().collect();
    let max_pixels = 1 << 20;
    let spec = ImageSpec {
        size: 16,
        channels: 3,
    };
    let loader = ImageLoader::new(spec, max_pixels, 64 << 20);
    // A decode may hold the largest allowed image at 8 bytes a pixel, a
    // converted copy and the decoder's own state.
    let bounds = Bounds {
        factor: 8,
        slack: 24 * max_pixels as usize + (8 << 20),
        whole_file: &[
            "cannot decode image",
            "cannot read image",
            "more than `max-pixels`",
            "no pixels",
        ],
    };
    let next = |rng: &mut StdRng| vec![mutate::mutate(rng, &flat)];
    fuzz("image", &bounds, &seeds, next, |files| {
        let path = put(dir.path(), "x.img", &files[0]);
        (loader.load_file(&path).map(drop), vec![path])
    });
}

#[test]
fn mnist_json() {
    let dir = tempfile::tempdir().unwrap();
    let seeds: Vec<Vec<Vec<u8>>> = seeds::mnist().into_iter().map(|m| vec![m]).collect();
    let flat: Vec<Vec<u8>> = seeds.iter().flatten().cloned().collect();
    let bounds = Bounds {
        factor: 16,
        slack: 2 << 20,
        whole_file: &[
            "has no images",
            "has no `data` field",
            "not a multiple of 784",
        ],
    };
    let next = |rng: &mut StdRng| vec![mutate::mutate(rng, &flat)];
    fuzz("mnist", &bounds, &seeds, next, |files| {
        let path = put(dir.path(), "3.json", &files[0]);
        (mnist::values(&path).map(drop), vec![path])
    });
}

/// Whole-file errors of the text lists.
const LIST_WHOLE_FILE: &[&str] = &["has no trials", "has no entries", "is empty", "announces"];

#[test]
fn trial_split_and_pair_lists() {
    let dir = tempfile::tempdir().unwrap();
    let all = seeds::lists();
    let bounds = Bounds {
        factor: 64,
        slack: 2 << 20,
        whole_file: LIST_WHOLE_FILE,
    };
    let next = |rng: &mut StdRng| vec![mutate::mutate(rng, &all)];
    // Each seed is valid for its own reader; generated lists go to all.
    let (trials, split, pairs) = (&all[0], &all[1], &all[2]);
    let path = put(dir.path(), "list.txt", trials);
    lists::trial_list(&path).unwrap();
    let path = put(dir.path(), "list.txt", split);
    lists::iden_split(&path).unwrap();
    let path = put(dir.path(), "list.txt", pairs);
    lists::lfw_pairs(&path).unwrap();
    fuzz("lists", &bounds, &[], next, |files| {
        let path = put(dir.path(), "list.txt", &files[0]);
        // Each reader's error must be located; the first that is not is
        // returned for the harness to report.
        let results = [
            lists::trial_list(&path).map(drop),
            lists::iden_split(&path).map(drop),
            lists::lfw_pairs(&path).map(drop),
        ];
        let files = vec![path.clone()];
        let unlocated = results
            .into_iter()
            .filter_map(Result::err)
            .find(|e| !located(e, &files, LIST_WHOLE_FILE));
        (unlocated.map_or(Ok(()), Err), files)
    });
}
