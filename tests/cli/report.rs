//! `tuneflow report`: a self-contained HTML page per run, opened in a real
//! headless browser.

use crate::browser;
use crate::harness::Fixture;
use crate::history::SCORED;

fn run_ids(f: &Fixture) -> Vec<String> {
    let r = f.tuneflow(&["runs", "p.toml", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    r.events()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_report_per_run_opens_cleanly_and_links_the_others() {
    let f = Fixture::new();
    f.write("p.toml", SCORED);
    f.run_ok("p.toml", &[]);
    f.run_ok("p.toml", &["--set", "params.lr=0.5,0.9"]);
    let ids = run_ids(&f);
    assert_eq!(ids.len(), 3);
    let r = f.tuneflow(&["report", "p.toml"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let page = std::path::PathBuf::from(r.stdout.trim());
    assert_eq!(page, f.path(&format!(".tuneflow/reports/{}.html", ids[2])));
    // The pages it links to are there too.
    for id in &ids {
        assert!(
            f.path(&format!(".tuneflow/reports/{id}.html")).is_file(),
            "{id}"
        );
    }
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(&format!("href=\"{}.html\"", ids[0])));
    let opened = browser::open(&page);
    opened.assert_clean();
    // The latest variant (lr 0.9): its metrics, the sweep with both
    // variants, the best `acc` marked, its override, the graph.
    let m = opened.metrics();
    assert_eq!(m.get("score.m:value.acc"), Some(&0.9), "{m:?}");
    assert!(opened.dom.contains("--set params.lr=0.9"));
    assert!(opened.dom.contains(r#"id="sweep-table""#));
    assert_eq!(
        opened
            .dom
            .matches("data-sweep-metric=\"score.m:value.acc\"")
            .count(),
        2
    );
    assert!(opened
        .dom
        .contains(r#"class="num best" data-sweep-metric="score.m:value.acc" data-value="0.9""#));
    assert_eq!(opened.dom.matches("class=\"node ").count(), 2);
    assert!(opened.dom.contains(r#"data-stage="score""#));
    // The first run's page: its own value, and `score` ran (with why).
    let first = browser::open(&f.path(&format!(".tuneflow/reports/{}.html", ids[0])));
    first.assert_clean();
    assert_eq!(first.metrics().get("score.m:value.acc"), Some(&0.3));
    assert!(first.dom.contains("never run"), "the reason a stage ran");
}

#[test]
fn report_refuses_to_overwrite_what_is_not_a_report() {
    let f = Fixture::new();
    f.write("p.toml", SCORED);
    let none = f.tuneflow(&["report", "p.toml"]);
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(none.stderr.contains("no recorded run"), "{}", none.stderr);
    f.run_ok("p.toml", &[]);
    f.write("notes.html", "<p>my notes</p>");
    let r = f.tuneflow(&["report", "p.toml", "-o", "notes.html"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not a tuneflow report"), "{}", r.stderr);
    assert_eq!(f.read("notes.html"), "<p>my notes</p>");
    // A report is replaced; the page goes where -o says.
    let ok = f.tuneflow(&["report", "p.toml", "-o", "r.html"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let again = f.tuneflow(&["report", "p.toml", "-o", "r.html"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(f.read("r.html").contains("tuneflow report"));
    let bad = f.tuneflow(&["report", "p.toml", "nosuchrun"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("nosuchrun"), "{}", bad.stderr);
}
