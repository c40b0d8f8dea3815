//! The crash database on the command line: `triage --db` records each run's
//! cores ([`Ingest`]), `groups` lists what is recorded.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use comfy_table::{Table, presets};
use rayon::prelude::*;
use serde_json::json;

use pymortem::crashdb::{
    CrashFacts, CrashStore, FileStamp, GroupQuery, Record, Recorded, SCHEMA_VERSION, SqliteStore,
    content_hash, regroup, stamp,
};
use pymortem::report::SCHEMA_VERSION as JSON_SCHEMA_VERSION;
use pymortem::triage::signature::SIGNATURE_VERSION;

use super::escape::{esc, esc_path};
use super::render::{counted, fit_table};
use super::triage_cmd::{Outcome, signature_part_lines, utc};
use super::{emit_text, fail, print_report};

/// What one `triage --db` run did to the database.
#[derive(Debug, Clone, Default)]
pub(crate) struct IngestSummary {
    path: PathBuf,
    schema_version: u32,
    /// Crashes recorded for the first time.
    new_crashes: usize,
    /// Of those, cores that could not be read.
    unreadable: usize,
    /// New paths of crashes recorded before (copies, renamed files).
    new_paths: usize,
    /// Paths recorded before with the same size and time: not read.
    already_recorded: usize,
    /// Crashes given the current signature from their stored frames.
    regrouped: usize,
    /// Crashes whose stored frames do not suffice for it.
    kept: usize,
}

impl IngestSummary {
    /// The text report's first line.
    pub(crate) fn line(&self) -> String {
        let mut line = format!(
            "crash database {}: {} new ({} unreadable), {} already recorded, {}",
            esc_path(&self.path),
            self.new_crashes,
            self.unreadable,
            self.already_recorded,
            counted(
                self.new_paths,
                "new path of a recorded crash",
                "new paths of recorded crashes"
            ),
        );
        if self.regrouped > 0 {
            let _ = write!(
                line,
                ", {} regrouped by signature v{SIGNATURE_VERSION}",
                self.regrouped
            );
        }
        if self.kept > 0 {
            let _ = write!(
                line,
                ", {} keep an older signature (their cores must be read again)",
                self.kept
            );
        }
        line.push('\n');
        line
    }

    /// The `database` object of the JSON summary.
    pub(crate) fn json(&self) -> serde_json::Value {
        json!({
            "path": self.path.to_string_lossy(),
            "schema_version": self.schema_version,
            "new_crashes": self.new_crashes,
            "unreadable": self.unreadable,
            "new_paths": self.new_paths,
            "already_recorded": self.already_recorded,
            "regrouped": self.regrouped,
        })
    }
}

/// A `triage --db` run's side of the database.
pub(crate) struct Ingest {
    store: SqliteStore,
    host: Option<String>,
    summary: IngestSummary,
    /// Each file's stamp, taken before it was read.
    stamps: HashMap<PathBuf, FileStamp>,
    /// Each core's content hash (`None`: it could not be read whole).
    hashes: HashMap<PathBuf, Option<String>>,
    /// Copies of cores read in this run: linked once those are recorded.
    copies: Vec<PathBuf>,
}

impl Ingest {
    /// Open (or create) the database, migrate it, and regroup the crashes
    /// recorded under an older signature algorithm.
    pub(crate) fn open(path: &Path, host: Option<String>) -> Result<Ingest, String> {
        let mut store = SqliteStore::open(path).map_err(|e| e.to_string())?;
        let regrouped = regroup(&mut store).map_err(|e| e.to_string())?;
        let schema_version = store.schema_version().map_err(|e| e.to_string())?;
        Ok(Ingest {
            store,
            host,
            summary: IngestSummary {
                path: path.into(),
                schema_version,
                regrouped: regrouped.regrouped,
                kept: regrouped.kept,
                ..IngestSummary::default()
            },
            stamps: HashMap::new(),
            hashes: HashMap::new(),
            copies: Vec::new(),
        })
    }

    pub(crate) fn summary(&self) -> IngestSummary {
        self.summary.clone()
    }

    /// The files not recorded with their current size and modification
    /// time; the others are counted, never opened.
    pub(crate) fn drop_recorded(&mut self, files: Vec<PathBuf>) -> Result<Vec<PathBuf>, String> {
        let mut pending = Vec::with_capacity(files.len());
        for path in files {
            // A file that cannot be looked at is read anyway: reading it says why.
            let Ok(now) = stamp(&path) else {
                pending.push(path);
                continue;
            };
            if self.store.path_stamp(&path).map_err(|e| e.to_string())? == Some(now) {
                self.summary.already_recorded += 1;
            } else {
                self.stamps.insert(path.clone(), now);
                pending.push(path);
            }
        }
        Ok(pending)
    }

    /// The cores to read: each one's content is hashed (in the current
    /// thread pool); a core whose content is recorded is linked to its
    /// crash now, and a second copy within the batch once the first is
    /// recorded. A core that cannot be hashed is read, to say why.
    pub(crate) fn drop_recorded_contents(
        &mut self,
        cores: Vec<PathBuf>,
    ) -> Result<Vec<PathBuf>, String> {
        let hashed: Vec<(PathBuf, Option<String>)> = cores
            .into_par_iter()
            .map(|path| {
                let hash = content_hash(&path).ok();
                (path, hash)
            })
            .collect();
        let mut to_read = Vec::new();
        let mut linked = Vec::new();
        let mut first_of: HashSet<String> = HashSet::new();
        for (path, hash) in hashed {
            match &hash {
                Some(h) if self.store.has_content(h).map_err(|e| e.to_string())? => {
                    linked.push(path.clone());
                }
                Some(h) if !first_of.insert(h.clone()) => self.copies.push(path.clone()),
                _ => to_read.push(path.clone()),
            }
            self.hashes.insert(path, hash);
        }
        let records: Vec<Record> = linked.iter().map(|p| self.link(p)).collect();
        self.write(&records)?;
        Ok(to_read)
    }

    fn file_stamp(&self, path: &Path) -> FileStamp {
        self.stamps
            .get(path)
            .copied()
            .or_else(|| stamp(path).ok())
            .unwrap_or(FileStamp {
                size: 0,
                mtime_ns: 0,
            })
    }

    /// A path of a content already recorded.
    fn link(&self, path: &Path) -> Record {
        Record {
            path: path.into(),
            stamp: self.file_stamp(path),
            content_hash: self.hashes.get(path).cloned().flatten(),
            facts: None,
        }
    }

    /// Record cores just read, with what was read or why it could not be.
    pub(crate) fn record(&mut self, outcomes: &[Outcome]) -> Result<(), String> {
        let records: Vec<Record> = outcomes
            .iter()
            .map(|(path, outcome)| Record {
                path: path.clone(),
                stamp: self.file_stamp(path),
                content_hash: self.hashes.get(path).cloned().flatten(),
                facts: Some(match outcome {
                    Ok(core) => CrashFacts::triaged(core, self.host.as_deref()),
                    Err(e) => CrashFacts::unreadable(path, e, self.host.as_deref()),
                }),
            })
            .collect();
        self.write(&records)
    }

    /// Link the copies within the batch, now that their contents are recorded.
    pub(crate) fn finish(&mut self) -> Result<(), String> {
        let copies = std::mem::take(&mut self.copies);
        let records: Vec<Record> = copies.iter().map(|p| self.link(p)).collect();
        self.write(&records)
    }

    fn write(&mut self, records: &[Record]) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let outcomes = self.store.record(records).map_err(|e| e.to_string())?;
        for (record, outcome) in records.iter().zip(outcomes) {
            match outcome {
                Recorded::NewCrash => {
                    self.summary.new_crashes += 1;
                    if record.facts.as_ref().is_some_and(|f| f.error.is_some()) {
                        self.summary.unreadable += 1;
                    }
                }
                Recorded::NewPath => self.summary.new_paths += 1,
                Recorded::AlreadyRecorded => self.summary.already_recorded += 1,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct GroupsArgs {
    /// The crash database (written by `triage --db`).
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// Only crashes at or after DATE: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC), or Unix seconds.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    since: Option<u64>,
    /// At most N groups, the largest.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Print JSON (schema in docs/json-schema.md) instead of a table.
    #[arg(long)]
    json: bool,
}

/// `pymortem groups`.
pub fn groups(args: &GroupsArgs) -> i32 {
    let mut store = match SqliteStore::open_existing(&args.db) {
        Ok(store) => store,
        Err(e) => return fail(&e.to_string()),
    };
    if let Err(e) = regroup(&mut store) {
        return fail(&e.to_string());
    }
    let query = GroupQuery {
        since: args.since,
        limit: args.limit,
    };
    let list = match store.groups(&query) {
        Ok(list) => list,
        Err(e) => return fail(&e.to_string()),
    };
    if args.json {
        let groups: Vec<serde_json::Value> = list
            .groups
            .iter()
            .map(|g| {
                json!({
                    "signature": g.signature,
                    "signature_text": g.signature_text,
                    "count": g.count,
                    "first_seen": g.first_seen,
                    "last_seen": g.last_seen,
                    "python_versions": g.python_versions,
                    "hosts": g.hosts,
                    "boots": g.boots,
                    "example": g.example.as_ref().map(|p| p.to_string_lossy()),
                })
            })
            .collect();
        let report = json!({
            "schema": "groups",
            "schema_version": JSON_SCHEMA_VERSION,
            "signature_version": SIGNATURE_VERSION,
            "database": {
                "path": args.db.to_string_lossy(),
                "schema_version": SCHEMA_VERSION,
            },
            "since": args.since,
            "crashes": list.crashes,
            "unreadable": list.unreadable,
            "total_groups": list.total_groups,
            "groups": groups,
        });
        return print_report(true, &report, |_| String::new());
    }
    let mut s = format!(
        "crash database {}: {} in {}, {} unreadable",
        esc_path(&args.db),
        counted(list.crashes as usize, "crash", "crashes"),
        counted(list.total_groups as usize, "group", "groups"),
        list.unreadable
    );
    if let Some(since) = args.since {
        let _ = write!(s, ", since {}", utc(since));
    }
    if (list.groups.len() as u64) < list.total_groups {
        let _ = write!(
            s,
            " (the {} largest shown)",
            counted(list.groups.len(), "group", "groups")
        );
    }
    s.push('\n');
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    fit_table(&mut t);
    t.set_header([
        "#",
        "crashes",
        "signature",
        "python",
        "hosts",
        "first seen",
        "last seen",
    ]);
    for (i, g) in list.groups.iter().enumerate() {
        let hosts = if g.hosts.is_empty() {
            "unknown".to_string()
        } else {
            esc(&g.hosts.join(" ")).to_string()
        };
        t.add_row([
            (i + 1).to_string(),
            g.count.to_string(),
            g.signature.clone(),
            esc(&g.python_versions.join(" ")).to_string(),
            hosts,
            g.first_seen.map_or("-".into(), utc),
            g.last_seen.map_or("-".into(), utc),
        ]);
    }
    if !list.groups.is_empty() {
        let _ = writeln!(s, "{t}");
    }
    for (i, g) in list.groups.iter().enumerate() {
        let _ = writeln!(
            s,
            "\nGroup {} ({}, {}):",
            i + 1,
            counted(g.count as usize, "crash", "crashes"),
            esc(&g.signature)
        );
        let p = &g.parts;
        for line in signature_part_lines(
            p.fatal_error.as_deref(),
            p.signal.as_deref(),
            &p.python_frames,
            &p.native_frames,
            &p.finding_kinds,
        ) {
            let _ = writeln!(s, "  {line}");
        }
        if g.boots > 0 {
            let _ = writeln!(s, "  boots: {}", g.boots);
        }
        if let Some(example) = &g.example {
            let _ = writeln!(s, "  example: {}", esc_path(example));
        }
    }
    emit_text(&s)
}

/// `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` (or with a space; UTC, a trailing
/// `Z` allowed), or Unix seconds.
pub(crate) fn parse_date(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map_err(|_| format!("{text}: too large for Unix seconds"));
    }
    let bad =
        || format!("{text} is not a date: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC) or Unix seconds");
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, time) = match t.split_once(['T', ' ']) {
        Some((d, tm)) => (d, Some(tm)),
        None => (t, None),
    };
    let numbers = |s: &str, sep: char| -> Option<Vec<i64>> {
        s.split(sep).map(|n| n.parse::<i64>().ok()).collect()
    };
    let d = numbers(date, '-').ok_or_else(bad)?;
    let [year, month, day] = d[..] else {
        return Err(bad());
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return Err(bad());
    }
    let (h, m, sec) = match time {
        None => (0, 0, 0),
        Some(tm) => match numbers(tm, ':').ok_or_else(bad)?[..] {
            [h, m] => (h, m, 0),
            [h, m, sec] => (h, m, sec),
            _ => return Err(bad()),
        },
    };
    if !(0..24).contains(&h) || !(0..60).contains(&m) || !(0..61).contains(&sec) {
        return Err(bad());
    }
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::parse_date;

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2000-02-29"), Ok(951_782_400));
        assert_eq!(parse_date("2026-11-18T11:06"), Ok(1_795_000_000 - 40));
        assert_eq!(parse_date("2026-11-18 11:06:40Z"), Ok(1_795_000_000));
        assert_eq!(parse_date("1795000000"), Ok(1_795_000_000));
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("yesterday").is_err());
    }
}
