//! The `pymortem` command line: arguments, exit codes and output.
//!
//! Exit codes: 0 success; 1 findings (commands that check for problems);
//! 2 error (bad arguments, unreadable or invalid input).

mod bundle_cmd;
mod crashdb_cmd;
mod download_progress;
mod escape;
mod inputs;
mod layout_cmd;
mod live_cmd;
mod render;
mod triage_cmd;
mod watch_cmd;
mod width;

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use pymortem::corefile::OpenOptions;
use pymortem::modules::SearchPaths;
use pymortem::report::InfoReport;
use pymortem::{Options, Process};

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for errors.
pub const EXIT_ERROR: i32 = 2;
/// Exit code when a check could not run (the result is incomplete), and
/// nothing worse was found.
pub const EXIT_INCOMPLETE: i32 = 3;

/// Post-mortem forensic inspector for crashed CPython processes.
#[derive(Debug, Parser)]
#[command(name = "pymortem", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 success (every check ran and found nothing), 1 findings, \
2 error, 3 incomplete (a check could not run; the output says which and what would let it)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The process, its signal, threads, modules and Python version.
    Info(InfoArgs),
    /// The CPython structure layout of a core or an interpreter binary, and its source.
    Layout(layout_cmd::LayoutArgs),
    /// Every thread's Python stack.
    Threads(ThreadsArgs),
    /// Every asyncio task: its coroutines, state, what it awaits and who awaits it.
    Tasks(TasksArgs),
    /// Walk the free lists and the GC lists and flag every contradiction, with a verdict.
    Check(CheckArgs),
    /// Every free list (each tuple slot apart): link, counter, walked length and anomalies.
    Freelists(CheckArgs),
    /// Every GC generation: counts, walked length and anomalies.
    Gc(CheckArgs),
    /// One object: type, refcount, GC state, free-list membership, referrers and a repr.
    Object(ObjectArgs),
    /// Many cores (files and folders) in parallel, grouped by crash signature.
    Triage(triage_cmd::TriageArgs),
    /// The crash groups recorded in a crash database (`triage --db`), most frequent first.
    Groups(crashdb_cmd::GroupsArgs),
    /// A static HTML report of a crash database: groups, crashes per day, stacks, findings.
    Report(crashdb_cmd::ReportArgs),
    /// One archive holding the core and every file it needs (executable, libraries, debug files).
    Bundle(bundle_cmd::BundleArgs),
    /// Write an ELF core of a running process (like gcore), its threads stopped for milliseconds.
    Snapshot(live_cmd::SnapshotArgs),
}

/// Options shared by every command that opens a core.
#[derive(Debug, Clone, Args)]
struct CoreArgs {
    /// The core file (plain, or .zst, .lz4, .xz, .gz as systemd-coredump writes them), or a bundle.
    #[arg(required_unless_present_any = ["pid", "pgrep"])]
    core: Option<PathBuf>,
    #[command(flatten)]
    live: live_cmd::LiveArgs,
    #[command(flatten)]
    search: SearchArgs,
    /// Print JSON (schema in docs/json-schema.md) instead of tables.
    #[arg(long)]
    json: bool,
}

/// Where files named by a core are found.
#[derive(Debug, Clone, Args)]
pub(crate) struct SearchArgs {
    /// Resolve every path from the core under DIR, like gdb's sysroot.
    #[arg(long, value_name = "DIR")]
    sysroot: Option<PathBuf>,
    /// The main executable, when it is not at the path the core records.
    #[arg(long, value_name = "PATH")]
    exe: Option<PathBuf>,
    /// A directory of separate debug files (searched before /usr/lib/debug). Repeatable.
    #[arg(long = "debug-dir", value_name = "DIR")]
    debug_dirs: Vec<PathBuf>,
    /// Do not search /usr/lib/debug (on the host or under the sysroot).
    #[arg(long)]
    no_default_debug_dir: bool,
    /// A folder tree searched by build-id for module and debug files not where the core says. Repeatable.
    #[arg(long = "search-path", value_name = "DIR")]
    search_paths: Vec<PathBuf>,
    /// Do not ask debuginfod servers for missing files, even when DEBUGINFOD_URLS is set.
    #[arg(long)]
    no_debuginfod: bool,
    /// Where compressed cores and bundles are decompressed (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    /// The most a compressed core may decompress to (bytes, or with K, M, G, T);
    /// the rest is treated as truncated. Default 64G.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_core_size: Option<u64>,
}

/// `123`, `512M`, `64G`, `1T` (powers of 1024) as bytes.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{text}: the unit must be K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| {
        format!("{text} is not a size (a number, optionally followed by K, M, G or T)")
    })?;
    n.checked_mul(1u64 << shift)
        .filter(|&bytes| bytes > 0)
        .ok_or_else(|| format!("{text}: the size must be above 0 and below 16 EiB"))
}

impl SearchArgs {
    pub(crate) fn options(&self) -> Options {
        Options {
            open: OpenOptions {
                temp_dir: self.temp_dir.clone(),
                max_decompressed_size: self
                    .max_core_size
                    .unwrap_or(OpenOptions::default().max_decompressed_size),
                temp_budget: None,
            },
            search: SearchPaths {
                sysroot: self.sysroot.clone(),
                exe: self.exe.clone(),
                debug_dirs: self.debug_dirs.clone(),
                no_default_debug_dir: self.no_default_debug_dir,
                search_paths: self.search_paths.clone(),
                debuginfod: self.debuginfod(),
            },
        }
    }

    /// The client, when DEBUGINFOD_URLS names servers and it is not turned off.
    fn debuginfod(&self) -> Option<std::sync::Arc<pymortem::debuginfod::Debuginfod>> {
        if self.no_debuginfod {
            return None;
        }
        let mut client = pymortem::debuginfod::Debuginfod::from_env()?;
        let all = client.config().progress;
        if let Some(bars) = download_progress::DownloadBars::for_stderr(all) {
            client = client.with_progress(std::sync::Arc::new(bars));
        }
        Some(std::sync::Arc::new(client))
    }
}

impl CoreArgs {
    fn open(&self) -> Result<Process, String> {
        if self.core.is_some() && (!self.live.pid.is_empty() || self.live.pgrep.is_some()) {
            return Err("give a core file or --pid, not both".into());
        }
        match (&self.core, self.live.single_pid()?) {
            (Some(core), _) => open_core(core, &self.search),
            (None, Some(pid)) => live_cmd::attach(pid, &self.live, &self.search),
            (None, None) => Err("give a core file or --pid PID".into()),
        }
    }

    /// What the input is called in messages: the core's path, or the process.
    fn label(&self) -> String {
        match (&self.core, self.live.pid.first()) {
            (Some(core), _) => core.display().to_string(),
            (None, Some(pid)) => format!("process {pid}"),
            (None, None) => String::new(),
        }
    }

    /// Where source files are read: the sysroot, or a live process's root.
    fn source_root(&self) -> Option<PathBuf> {
        self.search.sysroot.clone().or_else(|| {
            let pid = *self.live.pid.first()?;
            pymortem::live::foreign_root(pid)
        })
    }
}

pub(crate) fn open_core(core: &std::path::Path, search: &SearchArgs) -> Result<Process, String> {
    inputs::check_search_paths(search)?;
    inputs::check_core_path(core)?;
    Process::open(core, &search.options()).map_err(|e| {
        // The hint is for inputs that are not cores, not for a full disk.
        if e.is_not_a_core() {
            format!("{e}\nhint: check that the file is an ELF core of an x86-64 Linux process (or a compressed one)")
        } else {
            e.to_string()
        }
    })
}

#[derive(Debug, Args)]
struct ThreadsArgs {
    #[command(flatten)]
    core: CoreArgs,
    /// Show each frame's arguments and locals (bounded reprs).
    #[arg(long)]
    locals: bool,
    /// Unwind every thread's native stack too and interleave the Python frames with it.
    #[arg(long)]
    native: bool,
    /// Do not show each frame's source line (read from the sysroot, or the host) in text output.
    #[arg(long)]
    no_source: bool,
    /// Also show every asyncio task (as the `tasks` command does).
    #[arg(long)]
    tasks: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Debug, Args)]
struct TasksArgs {
    #[command(flatten)]
    core: CoreArgs,
    /// Do not show each frame's source line (read from the sysroot, or the host) in text output.
    #[arg(long)]
    no_source: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

/// Layout cache options.
#[derive(Debug, Args)]
pub(crate) struct CacheArgs {
    /// Neither read nor write the layout cache.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// The layout cache folder (default: $XDG_CACHE_HOME/pymortem or ~/.cache/pymortem).
    #[arg(long, value_name = "DIR")]
    pub(crate) cache_dir: Option<PathBuf>,
    /// Ignore the built-in tables and _Py_DebugOffsets positions of versions newer than X.Y (tests).
    #[arg(long, value_name = "X.Y", hide = true, value_parser = parse_major_minor)]
    pub(crate) newest_known: Option<(u8, u8)>,
}

/// `X.Y` as numbers.
fn parse_major_minor(text: &str) -> Result<(u8, u8), String> {
    text.split_once('.')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
        .ok_or_else(|| format!("{text}: not X.Y"))
}

impl CacheArgs {
    pub(crate) fn options(&self) -> pymortem::layout::LayoutOptions {
        let cache_dir = match (&self.cache_dir, self.no_cache) {
            (None, false) => inputs::default_cache_dir(),
            (dir, _) => dir.clone(),
        };
        pymortem::layout::LayoutOptions {
            no_cache: self.no_cache,
            cache_dir,
            newest_known: self.newest_known,
        }
    }
}

fn threads(args: &ThreadsArgs) -> i32 {
    let process = match args.core.open() {
        Ok(p) => p,
        Err(message) => return fail(&message),
    };
    let options = pymortem::python::ThreadOptions {
        locals: args.locals,
        layout: args.cache.options(),
    };
    let state = pymortem::python::python_state(&process, &options);
    let mut report = pymortem::report::ThreadsReport::build(&process, state.as_ref());
    if args.native {
        report.add_native_stacks(&process, state.as_ref().ok());
    }
    let tasks = args
        .tasks
        .then(|| pymortem::report::TasksReport::build(&process, state.as_ref()));
    if let Some(tasks) = &tasks {
        report.tasks = Some(tasks.loops.clone());
        report.tasks_incomplete.clone_from(&tasks.incomplete);
    }
    let mut sources = (!args.no_source)
        .then(|| pymortem::python::source::SourceFiles::new(args.core.source_root().as_deref()));
    let code = print_report(args.core.json, &report, |r| {
        let mut text = render::threads(r, sources.as_mut());
        if let Some(tasks) = &tasks {
            text.push('\n');
            text.push_str(&render::tasks(tasks, sources.as_mut()));
        }
        text
    });
    if code != EXIT_OK {
        return code;
    }
    if let Err(e) = &state
        && process.python().is_some_and(|p| p.free_threaded.is_some())
    {
        // Refused, not incomplete: no files would let it be read.
        return fail(&format!("{}: {e}", args.core.label()));
    }
    let code = report.exit_code();
    if code == EXIT_ERROR {
        return fail(&format!(
            "{}: no CPython interpreter was found in the core: no Python stacks to show",
            args.core.label()
        ));
    }
    match tasks.map(|t| t.exit_code()) {
        Some(EXIT_INCOMPLETE) if code == EXIT_OK => EXIT_INCOMPLETE,
        _ => code,
    }
}

fn tasks(args: &TasksArgs) -> i32 {
    let (process, state) = match python_of(&args.core, &args.cache) {
        Ok(v) => v,
        Err(message) => return fail(&message),
    };
    let report = pymortem::report::TasksReport::build(&process, state.as_ref());
    let mut sources = (!args.no_source)
        .then(|| pymortem::python::source::SourceFiles::new(args.core.source_root().as_deref()));
    let code = print_report(args.core.json, &report, |r| {
        render::tasks(r, sources.as_mut())
    });
    if code != EXIT_OK {
        return code;
    }
    match report.exit_code() {
        EXIT_ERROR => fail(&format!(
            "{}: no CPython interpreter was found in the core: no asyncio tasks to show",
            args.core.label()
        )),
        code => code,
    }
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    core: CoreArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Debug, Args)]
struct ObjectArgs {
    #[command(flatten)]
    core: CoreArgs,
    /// The object's address (0x… or decimal).
    #[arg(value_parser = parse_address, required_unless_present = "pid")]
    address: Option<u64>,
    #[command(flatten)]
    cache: CacheArgs,
}

fn parse_address(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed.map_err(|_| format!("{text} is not an address (0x… or decimal)"))
}

/// The checks run on an opened process, as `check`, `freelists` and `gc` report them.
pub(crate) fn check_report(
    process: &Process,
    cache: &CacheArgs,
    part: pymortem::report::CheckPart,
) -> pymortem::report::CheckReport {
    let options = pymortem::python::ThreadOptions {
        locals: false,
        layout: cache.options(),
    };
    let state = pymortem::python::python_state(process, &options);
    let result = state
        .as_ref()
        .ok()
        .map(|s| pymortem::forensics::check(process, s));
    pymortem::report::CheckReport::build(process, state.as_ref(), result, part)
}

fn python_of(
    core: &CoreArgs,
    cache: &CacheArgs,
) -> Result<
    (
        Process,
        Result<pymortem::python::PythonState, pymortem::python::PythonError>,
    ),
    String,
> {
    let process = core.open()?;
    let options = pymortem::python::ThreadOptions {
        locals: false,
        layout: cache.options(),
    };
    let state = pymortem::python::python_state(&process, &options);
    Ok((process, state))
}

fn check(args: &CheckArgs, part: pymortem::report::CheckPart) -> i32 {
    if args.core.live.is_many() {
        if args.core.core.is_some() {
            return fail("give a core file or --pid, not both");
        }
        return live_cmd::check_many(args, part);
    }
    let process = match args.core.open() {
        Ok(p) => p,
        Err(message) => return fail(&message),
    };
    let report = check_report(&process, &args.cache, part);
    let code = print_report(args.core.json, &report, render::check);
    if code == EXIT_OK {
        report.exit_code()
    } else {
        code
    }
}

fn object(args: &ObjectArgs) -> i32 {
    // `object --pid PID ADDRESS`: the one positional, parsed as the core
    // (the first), is the address.
    let address = match (args.address, &args.core.core) {
        (Some(address), _) => address,
        (None, Some(text)) if !args.core.live.pid.is_empty() => {
            match parse_address(&text.to_string_lossy()) {
                Ok(address) => address,
                Err(message) => return fail(&message),
            }
        }
        _ => return fail("give the object's address (0x… or decimal)"),
    };
    let core = CoreArgs {
        core: args.address.and(args.core.core.clone()),
        ..args.core.clone()
    };
    let (process, state) = match python_of(&core, &args.cache) {
        Ok(v) => v,
        Err(message) => return fail(&message),
    };
    let state = match state {
        Ok(s) => s,
        Err(e) if process.python().is_some_and(|p| p.free_threaded.is_none()) => {
            let _ = writeln!(
                io::stderr(),
                "pymortem: incomplete: {}: the interpreter's structures could not be read: {e}; {}",
                args.core.label(),
                pymortem::forensics::coverage::interpreter_files_remedy(&process)
            );
            return EXIT_INCOMPLETE;
        }
        Err(e) => return fail(&format!("{}: {e}", args.core.label())),
    };
    let info = pymortem::forensics::inspect(&process, &state, address);
    let incomplete = !info.unchecked.is_empty();
    let code = print_report(
        args.core.json,
        &pymortem::report::ObjectReport::new(info),
        render::object,
    );
    if code == EXIT_OK && incomplete {
        EXIT_INCOMPLETE
    } else {
        code
    }
}

#[derive(Debug, Args)]
struct InfoArgs {
    #[command(flatten)]
    core: CoreArgs,
    #[command(flatten)]
    cache: CacheArgs,
}

/// Run the command line and return the exit code.
pub fn run() -> i32 {
    run_from(std::env::args_os())
}

/// [`run`] with the arguments given (the first is the program name): the
/// Python package's `pymortem` command (`python/src/lib.rs`), whose process
/// arguments are the interpreter's, runs the command line through it.
pub fn run_from<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    // A file truncated while it is mapped ends the run with a message that
    // names it (exit 2), not a silent SIGBUS.
    pymortem::mapped_file::report_bus_errors();
    match cli.command {
        Command::Info(args) => info(&args),
        Command::Layout(args) => layout_cmd::run(&args),
        Command::Threads(args) => threads(&args),
        Command::Tasks(args) => tasks(&args),
        Command::Check(args) => check(&args, pymortem::report::CheckPart::All),
        Command::Freelists(args) => check(&args, pymortem::report::CheckPart::FreeLists),
        Command::Gc(args) => check(&args, pymortem::report::CheckPart::Gc),
        Command::Object(args) => object(&args),
        Command::Triage(args) => triage_cmd::run(&args),
        Command::Groups(args) => crashdb_cmd::groups(&args),
        Command::Report(args) => crashdb_cmd::report(&args),
        Command::Bundle(args) => bundle_cmd::run(&args),
        Command::Snapshot(args) => live_cmd::snapshot(&args),
    }
}

fn info(args: &InfoArgs) -> i32 {
    let process = match args.core.open() {
        Ok(p) => p,
        Err(message) => return fail(&message),
    };
    let mut report = InfoReport::build(&process);
    let options = pymortem::python::ThreadOptions {
        locals: false,
        layout: args.cache.options(),
    };
    let state = match pymortem::python::python_state(&process, &options) {
        Ok(state) => Some(state),
        Err(e) => {
            // Nothing Python is shown: say why (a free-threaded build, a missing layout).
            if process.python().is_some() {
                report.diagnostics.push(pymortem::Diagnostic::error(
                    pymortem::DiagnosticSource::Python,
                    format!("no Python state: {e}"),
                ));
            }
            None
        }
    };
    report.add_crashed_stack(&process, state.as_ref());
    let out = if args.core.json {
        serde_json::to_string_pretty(&report)
            .map(|s| s + "\n")
            .unwrap_or_default()
    } else {
        return emit_text(&render::info(&report));
    };
    emit(&out)
}

/// Print a report as JSON or as text.
pub(crate) fn print_report<T: serde::Serialize>(
    json: bool,
    report: &T,
    text: impl FnOnce(&T) -> String,
) -> i32 {
    if !json {
        return emit_text(&text(report));
    }
    let out = serde_json::to_string_pretty(report)
        .map(|s| s + "\n")
        .unwrap_or_default();
    emit(&out)
}

/// Print text meant for a terminal: no control character but its line
/// breaks gets through, whatever a renderer forgot to escape.
/// Lines fit the output's width, if it has one, and carry no trailing blanks.
pub(crate) fn emit_text(text: &str) -> i32 {
    emit(&width::fit(
        &escape::terminal_text(text),
        width::output_width(),
    ))
}

/// Print `text`; a closed pipe ends the program quietly.
pub(crate) fn emit(text: &str) -> i32 {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => fail(&format!("cannot write output: {e}")),
    }
}

pub(crate) fn fail(message: &str) -> i32 {
    let _ = writeln!(
        io::stderr(),
        "pymortem: error: {}",
        escape::terminal_text(message)
    );
    EXIT_ERROR
}

#[cfg(test)]
mod tests {
    /// clap checks the arguments' definitions only when a command is
    /// parsed in a debug build: check them all at once.
    #[test]
    fn every_command_line_definition_is_valid() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
