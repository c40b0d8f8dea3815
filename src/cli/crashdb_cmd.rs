//! The crash database on the command line: `triage --db` records each run's
//! cores ([`Ingest`]), `groups` lists what is recorded.

use std::fmt::Write as _;

use clap::Args;
use comfy_table::{Table, presets};

use pymortem::crashdb::{GroupQuery, IngestSummary, open_store, regroup};
use pymortem::triage::signature::SIGNATURE_VERSION;

use super::escape::{esc, esc_path};
use super::render::{counted, fit_table};
use super::triage_cmd::{signature_part_lines, utc};
use super::{emit_text, fail, print_report};

/// The text report's first line of a `triage --db` run.
pub(crate) fn ingest_line(summary: &IngestSummary) -> String {
    let mut line = format!(
        "crash database {}: {} new ({} unreadable), {} already recorded, {}",
        esc(&summary.location),
        summary.new_crashes,
        summary.unreadable,
        summary.already_recorded,
        counted(
            summary.new_paths,
            "new path of a recorded crash",
            "new paths of recorded crashes"
        ),
    );
    if summary.regrouped > 0 {
        let _ = write!(
            line,
            ", {} regrouped by signature v{SIGNATURE_VERSION}",
            summary.regrouped
        );
    }
    if summary.kept > 0 {
        let _ = write!(
            line,
            ", {} keep an older signature (their cores must be read again)",
            summary.kept
        );
    }
    line.push('\n');
    line
}

/// The `database` object of a `triage --db` run's JSON summary.
pub(crate) fn ingest_json(summary: &IngestSummary) -> serde_json::Value {
    summary.to_json()
}

/// Which database and which of its crashes `groups` and `report` show.
#[derive(Debug, Args)]
pub struct DbQueryArgs {
    /// The crash database (written by `triage --db`): a SQLite file or a
    /// postgresql:// URL.
    #[arg(long, value_name = "URL")]
    db: String,
    /// Only crashes at or after DATE: YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] (UTC), or Unix seconds.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    since: Option<u64>,
    /// At most N groups, the largest.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

impl DbQueryArgs {
    fn query(&self) -> GroupQuery {
        GroupQuery {
            since: self.since,
            limit: self.limit,
        }
    }

    /// The database, opened (it must exist) and regrouped.
    fn open(&self) -> Result<Box<dyn pymortem::crashdb::CrashStore>, String> {
        let mut store = open_store(&self.db, false).map_err(|e| e.to_string())?;
        regroup(store.as_mut()).map_err(|e| e.to_string())?;
        Ok(store)
    }
}

#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    query: DbQueryArgs,
    /// Print JSON (schema in docs/json-schema.md) instead of a table.
    #[arg(long)]
    json: bool,
}

/// `pymortem groups`.
pub fn groups(args: &GroupsArgs) -> i32 {
    let mut store = match args.query.open() {
        Ok(store) => store,
        Err(message) => return fail(&message),
    };
    let query = args.query.query();
    let list = match store.groups(&query) {
        Ok(list) => list,
        Err(e) => return fail(&e.to_string()),
    };
    if args.json {
        let report = pymortem::report::groups_json(&list, &store.location(), args.query.since);
        return print_report(true, &report, |_| String::new());
    }
    let mut s = format!(
        "crash database {}: {} in {}, {} unreadable",
        esc(&store.location()),
        counted(list.crashes as usize, "crash", "crashes"),
        counted(list.total_groups as usize, "group", "groups"),
        list.unreadable
    );
    if let Some(since) = args.query.since {
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

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    query: DbQueryArgs,
    /// The folder to write index.html into (created if missing).
    #[arg(short, long, value_name = "DIR")]
    output: std::path::PathBuf,
}

/// `pymortem report`.
pub fn report(args: &ReportArgs) -> i32 {
    let mut store = match args.query.open() {
        Ok(store) => store,
        Err(message) => return fail(&message),
    };
    let query = args.query.query();
    match pymortem::report::html::write_html_report(store.as_mut(), &query, &args.output) {
        Ok(summary) => emit_text(&format!(
            "{}: {} in {}, {} unreadable\n",
            esc_path(&summary.index),
            counted(summary.crashes as usize, "crash", "crashes"),
            counted(summary.groups, "group", "groups"),
            summary.unreadable
        )),
        Err(e) => fail(&e.to_string()),
    }
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
