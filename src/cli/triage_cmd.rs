//! `pymortem triage`: many cores in parallel, grouped by crash signature.

use pymortem::forensics::VerdictStatus;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use comfy_table::{Table, presets};
use rayon::prelude::*;
use serde_json::json;

use pymortem::corefile::TempBudget;
use pymortem::report::SCHEMA_VERSION;
use pymortem::triage::signature::{SIGNATURE_VERSION, crash_kind};
use pymortem::triage::{
    CoreTriage, TriageOptions, classify_inputs, group, triage_core, walk_inputs,
};

use pymortem::crashdb::{Ingest, IngestSummary, Outcome};

use super::crashdb_cmd::{ingest_json, ingest_line};
use super::escape::{csv_field, esc, esc_path};
use super::render::{counted, fit_table};
use super::{CacheArgs, EXIT_OK, SearchArgs, emit, emit_text, fail};

#[derive(Debug, Args)]
pub struct TriageArgs {
    /// Cores and folders of cores (walked recursively; systemd-coredump's
    /// .zst, .lz4 and .xz files included).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    search: SearchArgs,
    #[command(flatten)]
    cache: CacheArgs,
    /// One JSON object per core per line, then the groups.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// One CSV row per core.
    #[arg(long)]
    csv: bool,
    /// Exit 1 when a core has error or warning findings (`findings`), could not be read
    /// (`errors`), or could not be checked in full (`incomplete`).
    #[arg(long, value_enum)]
    fail_on: Vec<FailOn>,
    /// Skip the free-list and GC checks: faster, and signatures carry no finding kinds.
    #[arg(long)]
    no_checks: bool,
    /// Cores read at once (default: one per CPU).
    #[arg(long)]
    jobs: Option<usize>,
    /// The most the batch's decompressed cores may take in the temp dir at
    /// once (bytes, or with K, M, G, T; default: the --max-core-size value); a
    /// core that does not fit is decompressed alone, when the others are done.
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size)]
    max_batch_temp: Option<u64>,
    /// Record every core in this crash database: a SQLite file (created if
    /// missing) or a postgresql://user@host/db URL. Cores already recorded are
    /// not read again; the report covers the new ones.
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// The machine the cores come from, recorded with them (a core does not say).
    #[arg(long, value_name = "NAME", requires = "db")]
    host: Option<String>,
    /// Stay running: record the folder's cores, then each new core once it is
    /// whole (closed or renamed into the folder, and unchanged for --settle).
    /// Needs --db and one folder; prints one line per core recorded.
    #[arg(long, requires = "db", conflicts_with_all = ["csv", "fail_on"])]
    watch: bool,
    /// With --watch: seconds a new core's size and time must hold still.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 2.0,
        requires = "watch"
    )]
    settle: f64,
    /// With --watch: seconds between walks of the folder (events can be missed).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60.0,
        requires = "watch"
    )]
    rescan: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FailOn {
    Findings,
    Errors,
    Incomplete,
}

pub fn run(args: &TriageArgs) -> i32 {
    if let Err(message) = super::inputs::check_search_paths(&args.search) {
        return fail(&message);
    }
    // The database first: a database this pymortem cannot use stops the
    // run before any core is read.
    let mut db = match &args.db {
        Some(url) => match Ingest::open(url, args.host.clone()) {
            Ok(db) => Some(db),
            Err(e) => return fail(&e.to_string()),
        },
        None => None,
    };
    if args.watch {
        return watch(args, db);
    }
    let (files, mut skipped) = walk_inputs(&args.paths);
    if files.is_empty() && skipped.is_empty() {
        return fail("no files found under the paths given");
    }
    // Recorded files (same path, size and modification time) are dropped
    // before anything opens them.
    let files = match db.as_mut() {
        Some(db) => match db.drop_recorded(files) {
            Ok(files) => files,
            Err(e) => return fail(&e.to_string()),
        },
        None => files,
    };
    let (cores, not_cores) = classify_inputs(files);
    skipped.extend(not_cores);
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let mut open = args.search.options();
    let batch_limit = args
        .max_batch_temp
        .unwrap_or(open.open.max_decompressed_size);
    let budget = TempBudget::new(batch_limit);
    open.open.temp_budget = Some(Arc::clone(&budget));
    let options = TriageOptions {
        open,
        layout: args.cache.options(),
        no_checks: args.no_checks,
    };
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(args.jobs.unwrap_or(0))
        .build()
    {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot start worker threads: {e}")),
    };
    // With a database, the cores whose content is recorded (copies) are
    // linked, not read; copies within the batch are read once.
    let cores = match db.as_mut() {
        Some(db) => match pool.install(|| db.drop_recorded_contents(cores)) {
            Ok(cores) => cores,
            Err(e) => return fail(&e.to_string()),
        },
        None => cores,
    };
    let progress = Progress::new(cores.len());
    let analyse = |path: &PathBuf| {
        let outcome = triage_core(path, &options).map_err(pymortem::crashdb::UnreadableCore::from);
        progress.tick();
        (path.clone(), outcome)
    };
    let outcomes: Vec<Outcome> = match db.as_mut() {
        Some(db) => match db.read_and_record(&pool, &cores, analyse) {
            Ok(outcomes) => outcomes,
            Err(e) => {
                progress.finish();
                return fail(&e.to_string());
            }
        },
        None => pool.install(|| cores.par_iter().map(&analyse).collect()),
    };
    progress.finish();
    let triaged: Vec<CoreTriage> = outcomes
        .iter()
        .filter_map(|(_, o)| o.as_ref().ok().cloned())
        .collect();
    let groups = group(&triaged);
    let group_of = |signature: &str| {
        groups
            .iter()
            .position(|g| g.signature == signature)
            .map(|i| i + 1)
    };
    let database = db.as_ref().map(|db| db.summary().clone());
    let text = if args.json {
        json_lines(
            &outcomes,
            &skipped,
            &groups,
            &group_of,
            &budget,
            database.as_ref(),
        )
    } else if args.csv {
        csv(&outcomes, &skipped, &group_of)
    } else {
        let mut text = database.as_ref().map(ingest_line).unwrap_or_default();
        text.push_str(&table(&outcomes, &skipped, &groups));
        text
    };
    // CSV rows are data: escaped like text, never wrapped to a width. The
    // database's line goes to stderr there, where it breaks no row.
    let code = if args.json {
        emit(&text)
    } else if args.csv {
        if let Some(database) = &database {
            let line = ingest_line(database);
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                super::escape::terminal_text(&line).as_bytes(),
            );
        }
        emit(&super::escape::terminal_text(&text))
    } else {
        emit_text(&text)
    };
    if code != EXIT_OK {
        return code;
    }
    let findings = triaged.iter().any(|c| !c.finding_kinds.is_empty());
    let errors = outcomes.iter().any(|(_, o)| o.is_err());
    let incomplete = triaged
        .iter()
        .any(|c| c.verdict == Some(VerdictStatus::Incomplete));
    if (args.fail_on.contains(&FailOn::Findings) && findings)
        || (args.fail_on.contains(&FailOn::Errors) && errors)
        || (args.fail_on.contains(&FailOn::Incomplete) && incomplete)
    {
        1
    } else {
        EXIT_OK
    }
}

/// A progress bar on stderr with the rate and the time left, only when
/// stderr is a terminal: piped or redirected, nothing is written.
struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    fn new(total: usize) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: indicatif::ProgressBar::hidden(),
            };
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(total as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} cores · {rate} · {eta} left",
        ) {
            bar.set_style(style.with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.1} cores/s", state.per_sec());
                },
            ));
        }
        Progress { bar }
    }

    fn tick(&self) {
        self.bar.inc(1);
    }

    /// The bar goes away: the report follows on stdout.
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `triage --watch`.
fn watch(args: &TriageArgs, db: Option<Ingest>) -> i32 {
    let (Some(db), [dir]) = (db, args.paths.as_slice()) else {
        return fail("--watch needs --db and exactly one folder");
    };
    let seconds = |s: f64, what: &str| {
        if s.is_finite() && (0.0..=86_400.0).contains(&s) {
            Ok(std::time::Duration::from_secs_f64(s))
        } else {
            Err(format!("--{what} {s}: seconds from 0 to 86400"))
        }
    };
    let (settle, rescan) = match (
        seconds(args.settle, "settle"),
        seconds(args.rescan, "rescan"),
    ) {
        (Ok(a), Ok(b)) => (a, b.max(std::time::Duration::from_secs(1))),
        (Err(e), _) | (_, Err(e)) => return fail(&e),
    };
    let mut open = args.search.options();
    let budget = TempBudget::new(
        args.max_batch_temp
            .unwrap_or(open.open.max_decompressed_size),
    );
    open.open.temp_budget = Some(budget);
    let options = TriageOptions {
        open,
        layout: args.cache.options(),
        no_checks: args.no_checks,
    };
    let settings = super::watch_cmd::WatchSettings {
        dir: dir.clone(),
        settle,
        rescan,
        json: args.json,
        jobs: args.jobs.unwrap_or(0),
    };
    super::watch_cmd::watch(&settings, db, &options)
}

fn json_lines(
    outcomes: &[Outcome],
    skipped: &[pymortem::triage::Skipped],
    groups: &[pymortem::triage::Group],
    group_of: &dyn Fn(&str) -> Option<usize>,
    budget: &TempBudget,
    database: Option<&IngestSummary>,
) -> String {
    let mut out = String::new();
    for (path, outcome) in outcomes {
        let line = match outcome {
            Ok(c) => {
                let mut v = serde_json::to_value(c).unwrap_or_default();
                v["group"] = json!(group_of(&c.signature));
                v
            }
            Err(e) => json!({"path": path, "error": e}),
        };
        let _ = writeln!(out, "{line}");
    }
    for s in skipped {
        let _ = writeln!(out, "{}", json!({"path": s.path, "skipped": s.reason}));
    }
    let mut summary = json!({
        "schema": "triage",
        "schema_version": SCHEMA_VERSION,
        "signature_version": SIGNATURE_VERSION,
        "cores": outcomes.len(),
        "errors": outcomes.iter().filter(|(_, o)| o.is_err()).count(),
        "skipped": skipped.len(),
        "groups": groups,
        "temp": {"limit_bytes": budget.limit(), "peak_bytes": budget.peak()},
    });
    if let Some(database) = database {
        summary["database"] = ingest_json(database);
    }
    let _ = writeln!(out, "{summary}");
    out
}

fn csv(
    outcomes: &[Outcome],
    skipped: &[pymortem::triage::Skipped],
    group_of: &dyn Fn(&str) -> Option<usize>,
) -> String {
    let mut out = String::from(
        "path,status,group,signature,python_version,signal,fatal_error,python_frames,native_frames,finding_kinds,verdict,error\n",
    );
    let field = csv_field;
    for (path, outcome) in outcomes {
        let path = field(&path.to_string_lossy());
        let row = match outcome {
            Ok(c) => [
                path,
                "ok".into(),
                group_of(&c.signature).map_or(String::new(), |g| g.to_string()),
                c.signature.clone(),
                field(c.python_version.as_deref().unwrap_or("")),
                field(c.signal.as_deref().unwrap_or("")),
                field(c.fatal_error.as_deref().unwrap_or("")),
                field(&c.python_frames.join(" < ")),
                field(&c.native_frames.join(" < ")),
                field(&c.finding_kinds.join(" ")),
                c.verdict
                    .map(VerdictStatus::as_str)
                    .unwrap_or_default()
                    .to_string(),
                String::new(),
            ],
            Err(e) => {
                let mut row: [String; 12] = Default::default();
                row[0] = path;
                row[1] = "error".into();
                row[11] = field(e);
                row
            }
        };
        let _ = writeln!(out, "{}", row.join(","));
    }
    for s in skipped {
        let mut row: [String; 12] = Default::default();
        row[0] = field(&s.path.to_string_lossy());
        row[1] = "skipped".into();
        row[11] = field(&s.reason);
        let _ = writeln!(out, "{}", row.join(","));
    }
    out
}

fn table(
    outcomes: &[Outcome],
    skipped: &[pymortem::triage::Skipped],
    groups: &[pymortem::triage::Group],
) -> String {
    let mut s = String::new();
    let errors: Vec<(&PathBuf, &pymortem::crashdb::UnreadableCore)> = outcomes
        .iter()
        .filter_map(|(p, o)| o.as_ref().err().map(|e| (p, e)))
        .collect();
    let incomplete = outcomes
        .iter()
        .filter(|(_, o)| {
            o.as_ref()
                .is_ok_and(|c| c.verdict == Some(VerdictStatus::Incomplete))
        })
        .count();
    let _ = writeln!(
        s,
        "{}: {}, {}, {} incomplete, {} skipped (signature v{SIGNATURE_VERSION})",
        counted(outcomes.len(), "core", "cores"),
        counted(groups.len(), "group", "groups"),
        counted(errors.len(), "error", "errors"),
        incomplete,
        skipped.len()
    );
    // An overview that fits a terminal, then each group's signature lines,
    // which are too long for a table cell, each on a line of its own.
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    fit_table(&mut t);
    t.set_header([
        "#",
        "cores",
        "signature",
        "python",
        "first seen",
        "last seen",
    ]);
    for (i, g) in groups.iter().enumerate() {
        t.add_row([
            (i + 1).to_string(),
            g.count.to_string(),
            g.signature.clone(),
            esc(&g.python_versions.join(" ")).to_string(),
            g.first_seen.map_or("-".into(), utc),
            g.last_seen.map_or("-".into(), utc),
        ]);
    }
    if !groups.is_empty() {
        let _ = writeln!(s, "{t}");
    }
    for (i, g) in groups.iter().enumerate() {
        let _ = writeln!(
            s,
            "\nGroup {} ({}, {}):",
            i + 1,
            counted(g.count, "core", "cores"),
            g.signature
        );
        for line in signature_lines(g, outcomes) {
            let _ = writeln!(s, "  {line}");
        }
        let _ = writeln!(s, "  example: {}", esc_path(&g.example));
    }
    if !groups.is_empty() {
        s.push('\n');
    }
    // Each line names the core given, whatever file the message names.
    for (path, e) in errors {
        let shown = path.display().to_string();
        let message = e.strip_prefix(&format!("{shown}: ")).unwrap_or(e);
        let _ = writeln!(s, "error: {}: {}", esc(&shown), esc(message));
    }
    for (path, outcome) in outcomes {
        if let Ok(c) = outcome
            && !c.unchecked.is_empty()
        {
            let names: Vec<String> = c
                .unchecked
                .iter()
                .map(|u| u.describe().to_string())
                .collect();
            let _ = writeln!(
                s,
                "incomplete: {}: not checked: {}",
                esc_path(path),
                names.join(", ")
            );
        }
    }
    for k in skipped {
        let _ = writeln!(s, "skipped: {}: {}", esc_path(&k.path), esc(&k.reason));
    }
    s
}

/// The parts of a group's signature, one per line, each escaped on its
/// own: a name from the core may hold a newline, which must not start a
/// line of ours, so the parts come from the example core's fields rather
/// than from splitting the signature's text.
fn signature_lines(group: &pymortem::triage::Group, outcomes: &[Outcome]) -> Vec<String> {
    let example = outcomes
        .iter()
        .filter_map(|(_, outcome)| outcome.as_ref().ok())
        .find(|core| core.path == group.example);
    let Some(core) = example else {
        return vec![esc(&group.signature_text).to_string()];
    };
    signature_part_lines(
        core.fatal_error.as_deref(),
        core.signal.as_deref(),
        &core.python_frames,
        &core.native_frames,
        &core.finding_kinds,
    )
}

/// A signature's parts, one line each, each escaped on its own.
pub(crate) fn signature_part_lines(
    fatal_error: Option<&str>,
    signal: Option<&str>,
    python_frames: &[String],
    native_frames: &[String],
    finding_kinds: &[String],
) -> Vec<String> {
    let listed = |items: &[String], separator: &str| {
        if items.is_empty() {
            "none".to_string()
        } else {
            esc(&items.join(separator)).to_string()
        }
    };
    vec![
        esc(&crash_kind(fatal_error, signal)).to_string(),
        format!("python: {}", listed(python_frames, " < ")),
        format!("native: {}", listed(native_frames, " < ")),
        format!("findings: {}", listed(finding_kinds, ", ")),
    ]
}

/// Unix seconds as `YYYY-MM-DD HH:MM` UTC.
pub(crate) fn utc(seconds: u64) -> String {
    pymortem::triage::utc_text(seconds)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00");
        assert_eq!(super::utc(1_795_000_000), "2026-11-18 11:06");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00");
    }
}
