//! Live processes: `--pid` for the commands that read a core, `check`
//! across many processes, and `pymortem snapshot`.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use pymortem::Process;
use pymortem::live::{SnapshotInfo, SnapshotOptions};

use super::escape::terminal_text;
use super::{CheckArgs, EXIT_ERROR, EXIT_INCOMPLETE, EXIT_OK, SearchArgs, emit, emit_text, fail};

/// Which running processes to read instead of a core.
#[derive(Debug, Clone, Args)]
pub(crate) struct LiveArgs {
    /// Read the running process PID instead of a core (its threads are stopped while it is
    /// copied; the pause is printed). Repeatable for `check`.
    #[arg(long, value_name = "PID")]
    pub(crate) pid: Vec<i32>,
    /// `check` every process named NAME (`comm` or the command's base name), one line each.
    #[arg(long, value_name = "NAME", conflicts_with = "pid")]
    pub(crate) pgrep: Option<String>,
    /// With --pid: copy without stopping the process (no pause; the copy may be inconsistent).
    #[arg(long)]
    pub(crate) no_block: bool,
}

impl LiveArgs {
    /// The one process asked for; several are for `check` only.
    pub(crate) fn single_pid(&self) -> Result<Option<i32>, String> {
        if self.pgrep.is_some() || self.pid.len() > 1 {
            return Err("several processes (--pid given twice, or --pgrep) are read by `check`, `freelists` and `gc` only".into());
        }
        Ok(self.pid.first().copied())
    }

    /// Whether several processes are asked for.
    pub(crate) fn is_many(&self) -> bool {
        self.pgrep.is_some() || self.pid.len() > 1
    }

    fn options(&self) -> SnapshotOptions {
        SnapshotOptions {
            block: !self.no_block,
            ..SnapshotOptions::default()
        }
    }
}

/// Copy and open process `pid`; the pause goes to stderr.
pub(crate) fn attach(pid: i32, live: &LiveArgs, search: &SearchArgs) -> Result<Process, String> {
    super::inputs::check_search_paths(search)?;
    let process =
        Process::attach(pid, &search.options(), &live.options()).map_err(|e| e.to_string())?;
    if let Some(copy) = process.core().snapshot() {
        say(&format!("process {pid}: {}", copy.summary()));
    }
    Ok(process)
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "pymortem: {}", terminal_text(line));
}

/// `check --pid A --pid B` or `check --pgrep NAME`: one line per process,
/// or a JSON array of the reports; the worst exit code wins (errors
/// after findings: a process that could not be read is not a clean one).
pub(crate) fn check_many(args: &CheckArgs, part: pymortem::report::CheckPart) -> i32 {
    let live = &args.core.live;
    let pids = match &live.pgrep {
        Some(name) => {
            let found = pymortem::live::processes_named(name);
            if found.is_empty() {
                return fail(&format!(
                    "no process is named {name} (as `pgrep -x {name}` matches)"
                ));
            }
            found
        }
        None => live.pid.clone(),
    };
    if let Err(message) = super::inputs::check_search_paths(&args.core.search) {
        return fail(&message);
    }
    let mut worst = EXIT_OK;
    let mut lines = Vec::new();
    let mut reports = Vec::new();
    for pid in pids {
        let (code, line, report) = check_one(pid, args, part);
        worst = worse(worst, code);
        lines.push(line);
        reports.push(report);
    }
    let printed = if args.core.json {
        let out = serde_json::to_string_pretty(&reports)
            .map(|s| s + "\n")
            .unwrap_or_default();
        emit(&out)
    } else {
        emit_text(&(lines.join("\n") + "\n"))
    };
    if printed != EXIT_OK { printed } else { worst }
}

/// Findings (1) outrank incomplete (3), errors (2) outrank both.
fn worse(a: i32, b: i32) -> i32 {
    let rank = |c: i32| match c {
        EXIT_OK => 0,
        EXIT_INCOMPLETE => 1,
        1 => 2,
        _ => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

fn check_one(
    pid: i32,
    args: &CheckArgs,
    part: pymortem::report::CheckPart,
) -> (i32, String, serde_json::Value) {
    let options = args.core.live.options();
    let process = match Process::attach(pid, &args.core.search.options(), &options) {
        Ok(p) => p,
        Err(e) => {
            let message = e.to_string();
            return (
                EXIT_ERROR,
                format!("{pid:>8}  error: {message}"),
                serde_json::json!({"pid": pid, "error": message}),
            );
        }
    };
    let report = super::check_report(&process, &args.cache, part);
    let code = report.exit_code();
    let name = process
        .core()
        .psinfo()
        .map(|p| p.fname.clone())
        .unwrap_or_default();
    let verdict = report
        .verdict
        .as_ref()
        .map(|v| v.summary.clone())
        .unwrap_or_else(|| "no CPython interpreter found".into());
    let status = match code {
        EXIT_OK => "clean",
        1 => "FINDINGS",
        EXIT_INCOMPLETE => "incomplete",
        _ => "error",
    };
    let pause = process
        .core()
        .snapshot()
        .map(|s| s.pause_text())
        .unwrap_or_default();
    let line = format!(
        "{pid:>8}  {name:<15}  {status:<10}  {pause:<16}  {}",
        verdict.lines().next().unwrap_or("")
    );
    let json = serde_json::to_value(&report).unwrap_or_default();
    (code, line, json)
}

/// `pymortem snapshot PID -o FILE`.
#[derive(Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// The running process.
    pid: i32,
    /// The core to write (replaced atomically; readable by pymortem, gdb and pystack).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Compress it as systemd-coredump does (pymortem reads it as it is).
    #[arg(long, value_enum)]
    compress: Option<Compression>,
    /// Copy without stopping the process (no pause; the copy may be inconsistent).
    #[arg(long)]
    no_block: bool,
    /// Print what was copied as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Compression {
    Zstd,
}

pub(crate) fn snapshot(args: &SnapshotArgs) -> i32 {
    let options = SnapshotOptions {
        block: !args.no_block,
        ..SnapshotOptions::default()
    };
    match write_core(args, &options) {
        Ok(info) => {
            say(&format!(
                "process {}: {}; wrote {}",
                info.pid,
                info.summary(),
                args.output.display()
            ));
            if args.json {
                let out = serde_json::to_string_pretty(&info)
                    .map(|s| s + "\n")
                    .unwrap_or_default();
                return emit(&out);
            }
            EXIT_OK
        }
        Err(message) => fail(&message),
    }
}

/// Write the copy beside the output and rename it there: a reader never
/// sees half a core, and a failure leaves nothing.
fn write_core(args: &SnapshotArgs, options: &SnapshotOptions) -> Result<SnapshotInfo, String> {
    let dir = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let named = |e: std::io::Error| format!("{}: {e}", args.output.display());
    let temp = tempfile::Builder::new()
        .prefix(".pymortem-snapshot-")
        .tempfile_in(&dir)
        .map_err(|e| format!("{}: cannot write there: {e}", dir.display()))?;
    let info = match args.compress {
        None => pymortem::live::write_snapshot(args.pid, options, temp.as_file())
            .map_err(|e| e.to_string())?,
        Some(Compression::Zstd) => {
            let plain = tempfile::tempfile_in(&dir).map_err(named)?;
            let info = pymortem::live::write_snapshot(args.pid, options, &plain)
                .map_err(|e| e.to_string())?;
            compress_zstd(&plain, temp.as_file()).map_err(named)?;
            info
        }
    };
    temp.as_file().sync_all().map_err(named)?;
    temp.persist(&args.output).map_err(|e| named(e.error))?;
    Ok(info)
}

fn compress_zstd(plain: &std::fs::File, out: &std::fs::File) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut reader = plain;
    reader.seek(SeekFrom::Start(0))?;
    let mut encoder = zstd::stream::Encoder::new(out, 3)?;
    // The copy is mostly holes and zero pages: long matches pay.
    encoder.long_distance_matching(true)?;
    std::io::copy(&mut reader, &mut encoder)?;
    encoder.finish()?;
    Ok(())
}
