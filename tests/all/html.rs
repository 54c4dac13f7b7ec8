//! The HTML run report, end to end: a real run's metrics rendered to a page
//! that a real headless browser lays out (Debian's `chromium`).
//!
//! CI installs chromium and sets `ENSEMBLE_REQUIRE_CHROMIUM=1`, which makes
//! its absence a failure; elsewhere the test says it was skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ensemble::RunOptions;
use ensemble_tests::{Project, busy, copier, fails_first, writer};

/// How long chromium may take before the test gives up on it.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

fn chromium() -> Option<PathBuf> {
    let candidates = std::env::var_os("ENSEMBLE_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from));
    candidates.into_iter().find(|p| p.is_file())
}

/// Run chromium headless on `page` with `args`, its stdout to `stdout`;
/// killed after [`BROWSER_TIMEOUT`].
fn browse(chromium: &Path, profile: &Path, args: &[&str], page: &Path, stdout: &Path) {
    let out = std::fs::File::create(stdout).expect("create browser output file");
    let mut child = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            assert!(status.success(), "chromium {args:?} failed: {status}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn html_report_of_a_real_run_renders_in_a_browser() {
    let Some(chromium) = chromium() else {
        ensemble_tests::skip_or_require(
            "html::html_report_of_a_real_run_renders_in_a_browser",
            "chromium is not installed",
            "install it (apt-get install chromium)",
            "ENSEMBLE_REQUIRE_CHROMIUM",
        );
        return;
    };

    // `source`, then `left` and `right` in parallel (group `fan`) and `join`
    // after them; `flaky` fails both its attempts, so `after_flaky` is skipped.
    let project = Project::new();
    project
        .component("source", &writer("source.value"))
        .component("left", &copier("source.value", "left.value"))
        .component("right", &busy("right.value", 2_000_000))
        .component("flaky", &fails_first(5, "flaky.value"))
        .component("join", &copier("left.value", "join.value"))
        .component("after_flaky", &copier("flaky.value", "after_flaky.value"));
    let workflow = project.workflow(
        "agents:
  source:
    component: source.wasm
  left:
    component: left.wasm
    needs: [source]
  right:
    component: right.wasm
    needs: [source]
  flaky:
    component: flaky.wasm
    needs: [source]
    retry: {attempts: 2, backoff: 10ms, max_backoff: 1s}
  join:
    component: join.wasm
    needs: [left, right]
  after_flaky:
    component: after_flaky.wasm
    needs: [flaky]
groups:
  fan:
    agents: [left, right]
",
    );
    let report = crate::bounded(ensemble_tests::engine().run(&workflow, RunOptions::default())).await;
    assert!(!report.succeeded(), "flaky fails: {report:#?}");
    let metrics = report.metrics(&workflow);
    // One bar per attempt: four agents ran once, flaky twice, after_flaky never.
    let bars = 6;
    let agents = metrics.agents.len();
    assert_eq!(agents, 6);
    assert_eq!(metrics.agent("flaky").map(|a| a.attempts), Some(2), "{metrics:#?}");

    let page = ensemble::report::html::render(&metrics);
    assert_eq!(page.matches(r#"class="bar"#).count(), bars, "{page}");
    for colour in ["#2f9e44", "#e03131"] {
        assert!(page.contains(&format!(r#"fill="{colour}""#)), "bars of both outcomes: {colour}");
    }
    // Kept for people who want to look, replaced by the next run.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("report directory");
    let html = dir.join("report.html");
    std::fs::write(&html, &page).expect("write report.html");
    let profile = dir.join("chromium-profile");

    let png = dir.join("report.png");
    let screenshot = format!("--screenshot={}", png.display());
    browse(
        &chromium,
        &profile,
        &[&screenshot, "--window-size=1400,1000"],
        &html,
        &dir.join("screenshot.log"),
    );
    let image = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(image.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(image.len() > 8 * 1024, "a screenshot with something on it: {} bytes", image.len());
    eprintln!("HTML report: {}\nscreenshot: {}", html.display(), png.display());

    let dom_file = dir.join("dom.html");
    browse(&chromium, &profile, &["--dump-dom", "--virtual-time-budget=2000"], &html, &dom_file);
    let dom = std::fs::read_to_string(&dom_file).expect("chromium dumped the DOM");
    let svg_start =
        dom.find(r#"<svg id="timeline""#).unwrap_or_else(|| panic!("#timeline in the DOM: {dom}"));
    let svg_tag = &dom[svg_start..svg_start + dom[svg_start..].find('>').expect("tag ends")];
    assert!(svg_tag.contains(&format!(r#"data-agents="{agents}""#)), "{svg_tag}");
    assert!(
        svg_tag.contains(&format!(r#"data-rendered-bars="{bars}""#)),
        "the browser laid out every bar: {svg_tag}"
    );
    assert_eq!(dom.matches(r#"class="bar"#).count(), bars);
    // Keep the page and the screenshot for people who want to look; not the browser's profile.
    let _ = std::fs::remove_dir_all(&profile);
}
