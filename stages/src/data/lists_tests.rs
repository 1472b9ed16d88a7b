//! Tests of the text index files: names confined to the dataset folder
//! and empty or headerless lists (issue #11, cases 11 and 17).

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn lfw_pairs_read_matched_and_mismatched_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "pairs.txt",
        "1\t1\nAnn\t1\t2\n\nAnn\t1\tBo\t3\n",
    );
    let t = lfw_pairs(&p).unwrap();
    assert_eq!(
        (t[0].same, t[0].a.as_str(), t[1].b.as_str()),
        (true, "Ann/Ann_0001.jpg", "Bo/Bo_0003.jpg")
    );
    assert!(t[1].origin.ends_with("pairs.txt line 4"), "{}", t[1].origin);
    let view1 = write(dir.path(), "dev.txt", "1\nAnn\t1\t2\nAnn\t1\tBo\t3\n");
    assert_eq!(lfw_pairs(&view1).unwrap().len(), 2);
}

/// Issue #11 (11): a name like `../../../etc` was looked up outside the
/// dataset folder.
#[test]
fn lfw_names_that_leave_the_folder_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, shown) in [
        ("../../../etc\t1\t2", "../../../etc"),
        ("Ann\t1\t/etc\t2", "/etc"),
        ("a/b\t1\t2", "a/b"),
        ("..\t1\t2", ".."),
    ] {
        let p = write(
            dir.path(),
            "pairs.txt",
            &format!("1\t1\nAnn\t1\t2\n{bad}\n"),
        );
        let err = lfw_pairs(&p).unwrap_err().to_string();
        assert!(
            err.contains("pairs.txt` line 3: name `") && err.contains(&format!("`{shown}`")),
            "{bad}: {err}"
        );
    }
}

/// Issue #11 (17): a pair list without its header line lost its first
/// pair (or, with one pair, gave an empty dataset); a truncated list gave
/// fewer trials.
#[test]
fn lfw_lists_without_header_empty_or_truncated_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "pairs.txt", "Ann\t1\t2\n");
    let err = lfw_pairs(&p).unwrap_err().to_string();
    assert!(
        err.contains("pairs.txt` line 1: expected a header"),
        "{err}"
    );
    let p = write(dir.path(), "pairs.txt", "\n\n");
    let err = lfw_pairs(&p).unwrap_err().to_string();
    assert!(err.contains("pairs.txt`: is empty"), "{err}");
    let p = write(dir.path(), "pairs.txt", "10\t300\nAnn\t1\t2\n");
    let err = lfw_pairs(&p).unwrap_err().to_string();
    assert!(
        err.contains("announces 6000 pairs but the file has 1"),
        "{err}"
    );
}

#[test]
fn iden_split_and_trial_lists_confine_names_and_refuse_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "iden_split.txt",
        "1 id1/v/1.wav\n3 ../x/2.wav\n",
    );
    let err = iden_split(&p).unwrap_err().to_string();
    assert!(
        err.contains("iden_split.txt` line 2: name `../x/2.wav`"),
        "{err}"
    );
    let p = write(dir.path(), "iden_split.txt", "1 a.wav\n2 a.wav\n");
    assert!(iden_split(&p)
        .unwrap_err()
        .to_string()
        .contains("line 2: `a.wav` is listed in two sets"));
    let p = write(dir.path(), "iden_split.txt", "\n");
    assert!(iden_split(&p)
        .unwrap_err()
        .to_string()
        .contains("has no entries"));

    let p = write(
        dir.path(),
        "veri.txt",
        "1 a.wav b.wav\n0 a.wav /etc/passwd\n",
    );
    let err = trial_list(&p).unwrap_err().to_string();
    assert!(
        err.contains("veri.txt` line 2: name `/etc/passwd`"),
        "{err}"
    );
    let p = write(dir.path(), "veri.txt", "");
    assert!(trial_list(&p)
        .unwrap_err()
        .to_string()
        .contains("veri.txt`: has no trials"));
    let p = write(dir.path(), "veri.txt", "target a.wav b.wav\n");
    assert!(trial_list(&p).unwrap()[0].same);
}
