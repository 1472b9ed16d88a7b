//! A page opened in a real headless browser (Debian's `chromium`, which
//! `make test` installs when it is missing): its DOM after the scripts
//! ran, what it logged to the console, the errors it raised, the network
//! requests it made, and a screenshot.

use std::path::Path;
use std::process::Command;

/// What the browser made of a page.
pub struct Opened {
    /// The DOM after load, serialized.
    pub dom: String,
    /// Console messages and uncaught errors.
    pub console: Vec<String>,
    /// The screenshot.
    pub shot: image::RgbImage,
}

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c;
        }
    }
    panic!("no chromium: `make test` installs Debian's `chromium` (apt-get install chromium)");
}

// Injected after `<head>`: records uncaught errors, console.error/warn and
// every resource the page requested, into attributes the DOM dump shows.
const PROBE: &str = r#"<script>
window.__probe = [];
window.addEventListener('error', function (e) { window.__probe.push('error: ' + e.message); }, true);
window.addEventListener('securitypolicyviolation', function (e) { window.__probe.push('csp: ' + e.blockedURI); });
['error', 'warn'].forEach(function (k) { var f = console[k]; console[k] = function () { window.__probe.push(k + ': ' + Array.prototype.join.call(arguments, ' ')); f.apply(console, arguments); }; });
window.addEventListener('load', function () {
  var r = performance.getEntriesByType('resource').map(function (e) { return e.name; });
  document.documentElement.setAttribute('data-probe', JSON.stringify(window.__probe));
  document.documentElement.setAttribute('data-resources', JSON.stringify(r));
});
</script>"#;

fn browse(page: &Path, dir: &Path, args: &[&str]) -> (String, Vec<String>) {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let out = Command::new("timeout")
        .arg("120")
        .arg(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed: {stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Page load failed"))
        .map(str::to_owned)
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), console)
}

/// Opens `page` (an absolute path) in headless chromium, twice: once for
/// the DOM and the console, once for a 1280-wide screenshot.
pub fn open(page: &Path) -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let html = std::fs::read_to_string(page).unwrap();
    let at = html.find("<head>").expect("a <head>") + "<head>".len();
    let probed = dir.path().join("probed.html");
    std::fs::write(&probed, format!("{}{PROBE}{}", &html[..at], &html[at..])).unwrap();
    let (dom, mut console) = browse(&probed, dir.path(), &["--dump-dom"]);
    let shot_path = dir.path().join("shot.png");
    let (_, more) = browse(
        page,
        dir.path(),
        &[
            &format!("--screenshot={}", shot_path.display()),
            "--window-size=1280,2400",
        ],
    );
    console.extend(more);
    let shot = image::open(&shot_path).expect("a screenshot").to_rgb8();
    Opened { dom, console, shot }
}

impl Opened {
    /// Asserts the page loaded cleanly: its script ran to the end, nothing
    /// was logged or raised, nothing was fetched, and the screenshot shows
    /// a page (not a blank or an error page).
    pub fn assert_clean(&self) {
        assert!(self.console.is_empty(), "console: {:#?}", self.console);
        assert!(
            self.dom.contains(r#"data-ready="yes""#),
            "the page's script did not finish"
        );
        assert!(
            self.dom.contains(r#"data-probe="[]""#),
            "errors: {}",
            attr(&self.dom, "data-probe")
        );
        assert!(
            self.dom.contains(r#"data-resources="[]""#),
            "the page fetched: {}",
            attr(&self.dom, "data-resources")
        );
        let (w, h) = self.shot.dimensions();
        let inked = self
            .shot
            .pixels()
            .filter(|p| p.0.iter().any(|&c| c < 200))
            .count();
        let colours: std::collections::BTreeSet<[u8; 3]> =
            self.shot.pixels().map(|p| p.0).take(2_000_000).collect();
        // A blank or error page has a few hundred dark pixels at most; the
        // shortest report (two stages, no charts) has tens of thousands.
        assert!(
            inked > 10_000,
            "the screenshot is nearly blank ({inked} dark pixels of {})",
            w * h
        );
        assert!(colours.len() > 50, "only {} colours", colours.len());
    }

    /// Every `data-metric` cell: name -> value, as the DOM holds it.
    pub fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let mut out = std::collections::BTreeMap::new();
        for part in self.dom.split("data-metric=\"").skip(1) {
            let name = part.split('"').next().unwrap();
            let value = part
                .split("data-value=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            out.insert(name.replace("&amp;", "&"), value.parse().unwrap());
        }
        out
    }
}

fn attr(dom: &str, name: &str) -> String {
    dom.split(&format!("{name}=\"")).nth(1).map_or_else(
        || "(missing)".into(),
        |s| s.split('"').next().unwrap_or("").replace("&quot;", "\""),
    )
}
