//! Tests of class-folder listing: symlinks and empty classes (issue #11,
//! cases 11 and 17).

use std::os::unix::fs::symlink;

use super::*;

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"x").unwrap();
}

/// `data/c0/{0..9}.png`, `data/c1/{0..4}.png`: 15 files.
fn dataset(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    for i in 0..10 {
        touch(&data.join(format!("c0/{i}.png")));
    }
    for i in 0..5 {
        touch(&data.join(format!("c1/sub/{i}.png")));
    }
    data
}

fn list(data: &Path, skip: bool) -> Result<(Vec<SourceItem>, Skipped), DataError> {
    class_folders(&DatasetRoot::open(data).unwrap(), data, &["png"], skip)
}

/// Issue #11 (11): `c0/loop -> ..` made 615 items of 15, all labelled
/// `c0`. A folder link is never followed: an error naming it, or with
/// skip one skipped entry and the 15 real items.
#[test]
fn folder_links_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    symlink("..", data.join("c0/loop")).unwrap();
    let err = list(&data, false).unwrap_err().to_string();
    assert!(
        err.contains("c0/loop`: symlink to the folder `..` is not followed"),
        "{err}"
    );
    let (items, skipped) = list(&data, true).unwrap();
    assert_eq!((items.len(), skipped.count), (15, 1));
    // A class folder that is itself a link (here to a folder outside).
    let outside = dir.path().join("elsewhere");
    touch(&outside.join("a.png"));
    symlink(&outside, data.join("c2")).unwrap();
    std::fs::remove_file(data.join("c0/loop")).unwrap();
    let err = list(&data, false).unwrap_err().to_string();
    assert!(err.contains("c2`: symlink to the folder"), "{err}");
}

/// A link to a file inside the folder is followed (its own entry keeps
/// its name); one that leaves the folder, or is broken, is refused.
#[test]
fn file_links_are_followed_only_inside_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    symlink("../c0/3.png", data.join("c1/alias.png")).unwrap();
    let (items, _) = list(&data, false).unwrap();
    assert_eq!(items.len(), 16);
    assert!(items
        .iter()
        .any(|i| i.id == "c1/alias.png" && i.class == "c1"));

    // A link to a file that is never read (not an image) is ignored.
    symlink("/etc/hostname", data.join("c1/notes.txt")).unwrap();
    assert_eq!(list(&data, false).unwrap().0.len(), 16);

    let outside = dir.path().join("secret.png");
    touch(&outside);
    symlink(&outside, data.join("c1/out.png")).unwrap();
    let err = list(&data, false).unwrap_err().to_string();
    assert!(
        err.contains("c1/out.png`: symlink points outside the dataset folder"),
        "{err}"
    );
    std::fs::remove_file(data.join("c1/out.png")).unwrap();
    symlink("nowhere.png", data.join("c1/broken.png")).unwrap();
    let err = list(&data, false).unwrap_err().to_string();
    assert!(
        err.contains("c1/broken.png`: symlink to `nowhere.png` is broken"),
        "{err}"
    );
    let (items, skipped) = list(&data, true).unwrap();
    assert_eq!((items.len(), skipped.count), (16, 1));
}

/// Issue #11 (17): a class folder with no images dropped the class and
/// succeeded. It is an error, or with skip a counted, named entry.
#[test]
fn an_empty_class_folder_is_an_error_or_counted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path());
    touch(&data.join("c9/notes.txt"));
    let err = list(&data, false).unwrap_err().to_string();
    assert!(
        err.contains("c9`: class folder has no files with the extensions png"),
        "{err}"
    );
    let (items, skipped) = list(&data, true).unwrap();
    assert_eq!((items.len(), skipped.count), (15, 1));
    assert!(skipped.examples[0].contains("c9"), "{skipped:?}");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = list(&empty, true).unwrap_err().to_string();
    assert!(err.contains("has no class folders"), "{err}");
}
