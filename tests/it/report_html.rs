//! `pymortem report`: the crash database as a static HTML page. The page is
//! checked against what the test recorded (signals, days, versions and
//! frames from the samples' truth files), for escaping of hostile names,
//! and in headless Chromium: it loads without errors and its screenshot
//! shows the table and the charts' bars.

use crate::crashdb::synthetic;
use crate::support;
use crate::support::bundles;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const DAY0: u64 = 1_790_035_200; // 2026-09-22 00:00 UTC
const BOOT: &str = "0123456789abcdef0123456789abcdef";
const SIGNALS: [(i32, &str); 3] = [(11, "SIGSEGV"), (6, "SIGABRT"), (7, "SIGBUS")];
const SAMPLES: [&str; 2] = ["pyenv-2.7.18-double_free", "pyenv-3.11.7-threads"];

/// `YYYY-MM-DD` of Unix seconds (the test's own arithmetic: days are whole).
fn day_text(seconds: u64) -> String {
    // 2026-09-22 plus at most a few days: within September and October.
    let day = 22 + (seconds - DAY0) / 86_400;
    if day <= 30 {
        format!("2026-09-{day:02}")
    } else {
        format!("2026-10-{:02}", day - 30)
    }
}

struct Recorded {
    dir: tempfile::TempDir,
    db: PathBuf,
    /// Signal name -> the days of its cores.
    days: BTreeMap<&'static str, Vec<u64>>,
}

/// Synthetic cores named as systemd-coredump names them (so their times
/// are the names' times) over five days, the samples, and an unreadable
/// core with markup in its name, recorded in a SQLite database.
fn record() -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut days: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    for n in 0..12u32 {
        let (signo, name) = SIGNALS[n as usize % SIGNALS.len()];
        let time = DAY0 + u64::from(n % 5) * 86_400 + 3600 + u64::from(n);
        let file = format!("core.python3.1000.{BOOT}.{}.{}", 7000 + n, time * 1_000_000);
        std::fs::write(input.join(file), synthetic(200 + n, signo)).unwrap();
        days.entry(name).or_default().push(time);
    }
    // The samples' times are their files' times: within the five days.
    for name in SAMPLES {
        let copy = input.join(format!("{name}.pymortem"));
        std::fs::copy(bundles::sample(name), &copy).unwrap();
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(DAY0 + 2 * 86_400);
        std::fs::File::options()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }
    std::fs::write(
        input.join("core.<img src=x onerror=alert(1)>"),
        b"\x7fELF garbage".repeat(20),
    )
    .unwrap();
    let db = dir.path().join("crashes.db");
    let (code, _, stderr) = support::pymortem(&[
        "triage",
        "--db",
        db.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    Recorded { dir, db, days }
}

fn report(recorded: &Recorded) -> (PathBuf, String) {
    let out = recorded.dir.path().join("report");
    let (code, stdout, stderr) = support::pymortem(&[
        "report",
        "--db",
        recorded.db.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let index = out.join("index.html");
    assert!(stdout.contains("index.html"), "{stdout}");
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["index.html"], "nothing but the page is left");
    let html = std::fs::read_to_string(&index).unwrap();
    (index, html)
}

#[test]
fn the_page_shows_what_was_recorded_and_escapes_hostile_names() {
    let recorded = record();
    let (_, html) = report(&recorded);
    // 12 synthetic crashes in 3 signal groups, 2 samples; 1 unreadable.
    let total = 12 + SAMPLES.len();
    let header = format!("{total} crashes in");
    assert!(html.contains(&header), "{header}");
    assert!(html.contains(", 1 unreadable;"));
    let table = html
        .split("<table id=\"groups\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap();
    let rows = table.matches("<tr><td class=\"n\">").count();
    assert_eq!(rows, SIGNALS.len() + SAMPLES.len(), "{table}");
    let sections = html.matches("<section class=\"group\"").count();
    assert_eq!(sections, rows);
    // Each signal's chart has a bar per day it crashed on, with its count.
    for (signal, times) in &recorded.days {
        let heading = format!("signal: {signal} ({} crashes)", times.len());
        let section = html
            .split("<section class=\"group\"")
            .find(|s| s.contains(&heading))
            .unwrap_or_else(|| panic!("no section {heading}"));
        let mut per_day: BTreeMap<String, usize> = BTreeMap::new();
        for t in times {
            *per_day.entry(day_text(*t)).or_default() += 1;
        }
        for (day, count) in per_day {
            let tooltip = format!("<title>{day}: {count}</title>");
            assert!(section.contains(&tooltip), "{signal}: {tooltip}");
        }
    }
    // The samples: their Python versions and their crash frames.
    for name in SAMPLES {
        let truth = bundles::sample_truth(name);
        let version = truth["python_version"].as_str().unwrap();
        assert!(html.contains(version), "{name}: {version}");
        let frame = &truth["crash_frame"];
        let line = format!(
            "py  {} ({}:{})",
            frame["function"].as_str().unwrap(),
            frame["file"].as_str().unwrap(),
            frame["line"]
        );
        assert!(html.contains(&line), "{name}: {line}");
    }
    // The unreadable core's name is text, never markup.
    assert!(!html.contains("<img"), "markup from a file name");
    assert!(html.contains("core.&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains("<script"), "the page has no script");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page needs no network"
    );
}

/// Chromium, headless, with a profile and temp dir of its own.
fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/chromium");
    if path.is_file() {
        return Some(path);
    }
    if support::matrix_required() {
        panic!(
            "/usr/bin/chromium is missing and PYMORTEM_REQUIRE_MATRIX=1: apt-get install \
             chromium (sample-cores/setup-interpreters.sh does)"
        );
    }
    support::note_skipped_test();
    None
}

fn run_chromium(exe: &Path, scratch: &Path, args: &[String], page: &Path) -> (String, String) {
    let out = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("profile").display()
        ))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .env("TMPDIR", scratch)
        .env("HOME", scratch)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium {args:?}: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn the_page_renders_in_headless_chromium() {
    let Some(exe) = chromium() else {
        return;
    };
    let recorded = record();
    let (index, _) = report(&recorded);
    let scratch = tempfile::tempdir().unwrap();
    // The DOM after load: the table and one chart per group are there.
    let (dom, stderr) = run_chromium(&exe, scratch.path(), &["--dump-dom".into()], &index);
    assert!(dom.contains("<table id=\"groups\">"), "{dom}");
    assert!(dom.matches("<svg class=\"chart\"").count() > SIGNALS.len());
    for problem in ["Uncaught", "Failed to load resource", "ERR_"] {
        assert!(!stderr.contains(problem), "{problem}: {stderr}");
    }
    // The screenshot: the bars' colour is on it (the overview chart, the
    // trends and the first groups' charts fit the window).
    let shot = scratch.path().join("shot.png");
    run_chromium(
        &exe,
        scratch.path(),
        &[
            "--window-size=1300,1800".into(),
            "--hide-scrollbars".into(),
            format!("--screenshot={}", shot.display()),
        ],
        &index,
    );
    if let Some(keep) = std::env::var_os("PYMORTEM_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1300, 1800));
    let channels = info.color_type.samples();
    let bar_colour = [0xd9u8, 0x48, 0x0f];
    let near = |p: &[u8]| p.iter().zip(bar_colour).all(|(a, b)| a.abs_diff(b) <= 12);
    let bar_pixels = pixels.chunks(channels).filter(|p| near(&p[..3])).count();
    // Bars in the overview (3 days of 5 at least 40 px wide) and trends.
    assert!(
        bar_pixels > 5_000,
        "{bar_pixels} bar pixels on the screenshot"
    );
    // Text: dark pixels in the table's rows (well beyond the heading).
    let dark = pixels
        .chunks(channels)
        .filter(|p| p[..3].iter().all(|&c| c < 80))
        .count();
    assert!(
        dark > 8_000,
        "{dark} dark pixels: no table on the screenshot?"
    );
}
