//! Text tables, rendered from the report models.

use std::fmt::Write;

use comfy_table::{ContentArrangement, Table, presets};

use super::escape::{esc, esc_path};
use super::width::{output_width, short_build_id};

use pymortem::modules::{DebugStatus, DebugVia, FileStatus, ModuleSource, SectionCompression};
use pymortem::python::source::{SourceFiles, traceback_lines};
use pymortem::report::InfoReport;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.iter().copied());
    fit_table(&mut t);
    t
}

/// With a width (a terminal, or `COLUMNS`), the table wraps its cells to
/// fit it; without one, every cell stays whole on its line.
pub(crate) fn fit_table(t: &mut Table) {
    match output_width() {
        Some(width) => {
            t.set_content_arrangement(ContentArrangement::Dynamic);
            t.set_width(u16::try_from(width).unwrap_or(u16::MAX));
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
}

/// `1 core`, `2 cores`.
pub(crate) fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A value, or `unknown` when the core does not tell it.
fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "unknown".to_string(), |v| v.to_string())
}

/// An enum's name as the JSON shows it (`free_list_cycle`): the text output
/// never shows the code's identifiers.
pub(crate) fn json_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

/// The `info` report as text.
pub fn info(r: &InfoReport) -> String {
    let mut s = String::new();
    let c = &r.core;
    let _ = writeln!(
        s,
        "Core:       {} ({} bytes{}, {}, written by {}, {}, {})",
        esc_path(&c.path),
        c.size,
        c.compression
            .map(|f| format!(", {f}-compressed"))
            .unwrap_or_default(),
        c.arch.name(),
        producer_text(c.producer),
        counted(c.segments, "segment", "segments"),
        counted(c.notes, "note", "notes")
    );
    if let Some(t) = &c.truncated {
        let _ = writeln!(
            s,
            "            TRUNCATED: {} of {} bytes present",
            t.actual_size, t.expected_size
        );
    }
    let _ = writeln!(
        s,
        "Process:    pid {} ppid {} uid {}",
        opt(r.pid),
        opt(r.ppid),
        opt(r.uid)
    );
    let args = r.args.as_deref().map(esc);
    let _ = writeln!(
        s,
        "Command:    {} ({})",
        opt(args),
        opt(r.command.as_deref().map(esc))
    );
    let _ = writeln!(s, "Executable: {}", opt(r.executable.as_deref().map(esc)));
    match &r.signal {
        Some(sig) => {
            let mut line = match sig.code {
                Some(code) => format!(
                    "{} ({}), code {} ({code})",
                    opt(sig.name),
                    sig.number,
                    opt(sig.code_name),
                ),
                // No NT_SIGINFO: the number is the thread's pr_cursig.
                None => format!(
                    "{} ({}), no signal details in the core",
                    opt(sig.name),
                    sig.number
                ),
            };
            if let Some(addr) = sig.fault_address {
                let _ = write!(line, ", fault address {addr:#x}");
            }
            if let Some(pid) = sig.sender_pid {
                let _ = write!(line, ", sent by pid {pid}");
            }
            let _ = writeln!(s, "Signal:     {line}");
        }
        None => {
            let _ = writeln!(s, "Signal:     none recorded");
        }
    }
    match &r.python {
        Some(p) => {
            let _ = writeln!(
                s,
                "Python:     {} (from {} in {})",
                p.version,
                version_source_text(p.source),
                esc(&p.module)
            );
            if let Some(evidence) = &p.free_threaded {
                let _ = writeln!(
                    s,
                    "            free-threaded build, not supported yet: {evidence}"
                );
            }
        }
        // Without a single module nothing was looked at: no verdict.
        None if r.modules.is_empty() => {
            let _ = writeln!(
                s,
                "Python:     unknown: no module was found to look in (see the warnings below)"
            );
        }
        None => {
            let _ = writeln!(
                s,
                "Python:     not a Python process (no CPython interpreter found)"
            );
        }
    }
    let _ = writeln!(s, "\nThreads ({}):", r.threads.len());
    let mut t = table(&["", "LWP", "pthread id", "pc", "sp"]);
    for th in &r.threads {
        t.add_row(vec![
            if th.crashed {
                "crashed".to_string()
            } else {
                String::new()
            },
            th.lwp.to_string(),
            th.pthread_id.map_or("-".to_string(), |p| format!("{p:#x}")),
            format!("{:#x}", th.pc),
            format!("{:#x}", th.sp),
        ]);
    }
    let _ = writeln!(s, "{t}");
    let _ = writeln!(s, "\nModules ({}):", r.modules.len());
    match r.module_source {
        ModuleSource::NtFile => {}
        ModuleSource::LinkMap => {
            let _ = writeln!(
                s,
                "  (no NT_FILE note: recovered from the dynamic linker's link_map list)"
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "  (no NT_FILE note and no link_map list: the executable alone, if found)"
            );
        }
    }
    // The table says how each file was found; the paths that are not the
    // recorded one follow it, one per line, so the table stays narrow.
    let mut paths: Vec<String> = Vec::new();
    let mut t = table(&["module", "base", "build-id", "file", "debug info"]);
    for m in &r.modules {
        let name = format!(
            "{}{}",
            esc(&m.name),
            if m.deleted { " (deleted)" } else { "" }
        );
        let mut elsewhere = |state: &str, what: &str, path: &std::path::Path| {
            if path == std::path::Path::new(&m.path) {
                state.to_string()
            } else {
                paths.push(format!("  {name}: {what} {}", esc_path(path)));
                format!("{state}, elsewhere")
            }
        };
        let file = match &m.file {
            FileStatus::Verified { path } => elsewhere("ok", "file", path),
            FileStatus::Unverified { path } => elsewhere("unverified", "file", path),
            FileStatus::Mismatch { path, .. } => {
                paths.push(format!("  {name}: a different build at {}", esc_path(path)));
                "BUILD-ID MISMATCH".to_string()
            }
            FileStatus::Missing { .. } => "missing".to_string(),
            FileStatus::InCore => "in core".to_string(),
            _ => "unknown".to_string(),
        };
        let debug = match &m.debug {
            DebugStatus::Found {
                via: DebugVia::Embedded,
                ..
            } => "embedded".to_string(),
            DebugStatus::Found {
                path,
                via,
                compression,
            } => {
                let via = match via {
                    DebugVia::BuildId => "build-id",
                    DebugVia::Debuginfod => "debuginfod",
                    _ => "debuglink",
                };
                let packed = if *compression == SectionCompression::None {
                    ""
                } else {
                    ", compressed"
                };
                paths.push(format!("  {name}: debug file {}", esc_path(path)));
                format!("{via}{packed}")
            }
            DebugStatus::Missing { .. } => match m.mini_debuginfo.as_deref() {
                Some("used") => "MiniDebugInfo".to_string(),
                _ => "none".to_string(),
            },
            _ => "unknown".to_string(),
        };
        // A dwz supplementary file: where it is, or that the DWARF is incomplete.
        let debug = match &m.supplementary {
            Some(pymortem::modules::SupplementaryStatus::Found { path, .. }) => {
                paths.push(format!("  {name}: supplementary file {}", esc_path(path)));
                format!("{debug} + dwz")
            }
            Some(pymortem::modules::SupplementaryStatus::Missing {
                name: link,
                build_id,
                ..
            }) => {
                paths.push(format!(
                    "  {name}: supplementary file {} (build-id {}) MISSING: its DWARF is incomplete",
                    esc(link.as_deref().unwrap_or("(unreadable link)")),
                    esc(build_id.as_deref().unwrap_or("?"))
                ));
                format!("{debug}, INCOMPLETE")
            }
            _ => debug,
        };
        if let Some(why) = m
            .mini_debuginfo
            .as_deref()
            .and_then(|state| state.strip_prefix("unusable: "))
        {
            paths.push(format!("  {name}: MiniDebugInfo unusable: {}", esc(why)));
        }
        t.add_row(vec![
            name.clone(),
            format!("{:#x}", m.base),
            m.build_id.as_deref().map_or("-".into(), |b| {
                let id = esc(b).to_string();
                // On a terminal a prefix tells builds apart; piped, the whole id for grep.
                if output_width().is_some() {
                    short_build_id(&id)
                } else {
                    id
                }
            }),
            file,
            debug,
        ]);
    }
    let _ = writeln!(s, "{t}");
    if !paths.is_empty() {
        let _ = writeln!(s, "\nFiles not at their recorded path, and debug files:");
        for line in paths {
            let _ = writeln!(s, "{line}");
        }
    }
    crashed_stack(&mut s, r.crashed_lwp, r.crashed_thread_stack.as_ref());
    diagnostics_lines(&mut s, &r.diagnostics);
    s
}

/// The `threads` report as Python-style tracebacks, most recent call last;
/// with `sources`, each frame's source line under it and the executing part
/// of it marked beneath (3.11+).
pub fn threads(
    r: &pymortem::report::ThreadsReport,
    mut sources: Option<&mut SourceFiles>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", python_header(r));
    if r.interpreters.len() > 1 {
        for i in &r.interpreters {
            let _ = writeln!(
                s,
                "Interpreter {} at {:#x}: {}",
                opt(i.id),
                i.address,
                counted(i.threads, "thread", "threads")
            );
        }
    }
    for t in &r.threads {
        let mut tags = Vec::new();
        if t.crashed {
            tags.push("crashed");
        }
        if t.holds_gil {
            tags.push("holds the GIL");
        }
        let tags = if tags.is_empty() {
            String::new()
        } else {
            format!(" [{}]", tags.join(", "))
        };
        let lwp = t.lwp.map_or("no LWP".to_string(), |l| format!("LWP {l}"));
        let pthread = t
            .pthread_id
            .map_or(String::new(), |p| format!(" (pthread {p:#x})"));
        let _ = writeln!(s, "\nThread {lwp}{pthread}{tags}");
        if let Some(stack) = &t.stack {
            merged_stack(&mut s, stack);
            if let Some(e) = &t.frames_error {
                let _ = writeln!(s, "  ! Python stack incomplete: {}", esc(e));
            }
            continue;
        }
        if t.thread_states.is_empty() {
            let _ = writeln!(s, "  (no Python thread state)");
            continue;
        }
        // Several thread states (subinterpreters): outermost first, like the
        // traceback lines inside each.
        let several = t.thread_states.len() > 1;
        if several {
            let order = match t.thread_states_order {
                Some(pymortem::python::NestingOrder::Guess) => " (order guessed)",
                _ => "",
            };
            let _ = writeln!(
                s,
                "  {} thread states, outermost first{order}:",
                t.thread_states.len()
            );
        }
        for state in &t.thread_states {
            if several {
                let gil = if state.holds_gil {
                    " [holds the GIL]"
                } else {
                    ""
                };
                let _ = writeln!(
                    s,
                    "  Interpreter {} (thread state {:#x}){gil}:",
                    opt(state.interpreter_id),
                    state.thread_state
                );
            }
            traceback(
                &mut s,
                &state.frames,
                state.frames_error.as_deref(),
                sources.as_deref_mut(),
            );
        }
    }
    diagnostics_lines(&mut s, &r.diagnostics);
    s
}

/// Python frames as a traceback, most recent call last.
fn traceback(
    s: &mut String,
    frames: &[pymortem::python::PyFrame],
    error: Option<&str>,
    sources: Option<&mut SourceFiles>,
) {
    if frames.is_empty() {
        let _ = writeln!(s, "  (no Python frames)");
    } else {
        let _ = writeln!(s, "  Traceback (most recent call last):");
    }
    frame_lines(s, frames, sources);
    if let Some(e) = error {
        let _ = writeln!(s, "  ! stack incomplete: {}", esc(e));
    }
}

/// Python frames (innermost first) as traceback entries, outermost first,
/// with their source lines and locals.
fn frame_lines(
    s: &mut String,
    frames: &[pymortem::python::PyFrame],
    mut sources: Option<&mut SourceFiles>,
) {
    for f in frames.iter().rev() {
        if let Some(reason) = &f.unreadable {
            let _ = writeln!(s, "    <unreadable frame {:#x}: {}>", f.frame, esc(reason));
            continue;
        }
        let name = esc(f.qualname.as_deref().unwrap_or(&f.function));
        let line = f.line.map_or("unknown".to_string(), |l| l.to_string());
        let recovered = if f.recovered {
            "  [recovered from the data stack]"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "    File \"{}\", line {line}, in {name}{recovered}",
            esc(&f.file)
        );
        if let (Some(files), Some(number)) = (sources.as_deref_mut(), f.line)
            && let Some(text) = files.line(&f.file, number)
        {
            let ends_here = f.end_line.is_none_or(|end| end == number);
            let (shown, marker) = traceback_lines(text, f.column, f.end_column, ends_here);
            let _ = writeln!(s, "      {}", esc(&shown));
            if let Some(marker) = marker {
                let _ = writeln!(s, "      {marker}");
            }
        }
        for l in f.locals.iter().flatten() {
            let kind = if l.argument { "arg" } else { "local" };
            let _ = writeln!(s, "        {kind} {} = {}", esc(&l.name), esc(&l.repr));
        }
    }
}

/// The `tasks` report: each event loop, then each task with what it
/// awaits, who awaits it and its coroutines.
pub fn tasks(r: &pymortem::report::TasksReport, mut sources: Option<&mut SourceFiles>) -> String {
    let mut s = String::new();
    let count: usize = r.loops.iter().map(|l| l.tasks.len()).sum();
    let _ = writeln!(
        s,
        "Python {}: {}, {}",
        r.python_version.as_deref().unwrap_or("unknown"),
        counted(r.loops.len(), "event loop", "event loops"),
        counted(count, "asyncio task", "asyncio tasks")
    );
    if let Some(source) = &r.task_layout_source {
        let _ = writeln!(s, "Task layout: {}", esc(source));
    }
    for l in &r.loops {
        let _ = writeln!(
            s,
            "
Event loop {:#x} ({}): {}",
            l.address,
            esc(&l.type_name),
            counted(l.tasks.len(), "task", "tasks")
        );
        let names: std::collections::HashMap<u64, String> =
            l.tasks.iter().map(|t| (t.address, task_label(t))).collect();
        let label = |address: u64| {
            names
                .get(&address)
                .cloned()
                .unwrap_or_else(|| format!("task {address:#x}"))
        };
        for t in &l.tasks {
            task_lines(&mut s, t, &label, sources.as_deref_mut());
        }
    }
    if !r.incomplete.is_empty() {
        let _ = writeln!(
            s,
            "
Incomplete:"
        );
        for reason in &r.incomplete {
            let _ = writeln!(s, "  {}", esc(reason));
        }
    }
    diagnostics_lines(&mut s, &r.diagnostics);
    s
}

/// A task as others name it: its name and address.
fn task_label(t: &pymortem::asyncio::Task) -> String {
    match &t.name {
        Some(name) => format!("\"{name}\" ({:#x})", t.address),
        None => format!("task {:#x}", t.address),
    }
}

fn task_lines(
    s: &mut String,
    t: &pymortem::asyncio::Task,
    label: &dyn Fn(u64) -> String,
    sources: Option<&mut SourceFiles>,
) {
    let mut tags = vec![
        t.state
            .map_or("state unreadable", |st| st.name())
            .to_string(),
    ];
    if t.cancel_requested {
        tags.push("cancel requested".into());
    }
    if let Some(lwp) = t.running_on {
        tags.push(format!("running on LWP {lwp}"));
    }
    let type_name = if t.type_name == "_asyncio.Task" {
        String::new()
    } else {
        format!(" ({})", esc(&t.type_name))
    };
    let _ = writeln!(
        s,
        "
Task {}{type_name} [{}]",
        esc(&label(t.address)),
        tags.join(", ")
    );
    if let Some(reason) = &t.unreadable {
        let _ = writeln!(s, "  ! unreadable: {}", esc(reason));
        return;
    }
    if let Some(a) = &t.awaits {
        let of = if a.tasks.is_empty() || a.tasks == [a.address] {
            String::new()
        } else {
            let names: Vec<String> = a.tasks.iter().map(|&t| label(t)).collect();
            format!(" of {}", esc(&names.join(", ")))
        };
        let what = if a.tasks == [a.address] {
            esc(&label(a.address)).to_string()
        } else {
            format!("{} {:#x}", esc(&a.type_name), a.address)
        };
        let _ = writeln!(s, "  awaits {what}{of}");
    }
    if !t.awaited_by.is_empty() {
        let names: Vec<String> = t.awaited_by.iter().map(|&t| label(t)).collect();
        let _ = writeln!(s, "  awaited by {}", esc(&names.join(", ")));
    }
    if t.coroutine.is_empty() {
        let _ = writeln!(s, "  (no coroutine frame: the coroutine has finished)");
    } else {
        let _ = writeln!(s, "  Coroutines (outermost first):");
        frame_lines(s, &t.coroutine, sources);
    }
    if let Some(e) = &t.coroutine_error {
        let _ = writeln!(s, "  ! coroutine chain incomplete: {}", esc(e));
    }
}

/// For each Python frame of a merged stack, in order, its interpreter's id
/// when the stack holds several thread states (their frames come innermost
/// thread state first).
fn python_frame_interpreters(stack: &pymortem::stacks::MergedStack) -> Vec<String> {
    if stack.thread_states.len() < 2 {
        return Vec::new();
    }
    stack
        .thread_states
        .iter()
        .rev()
        .flat_map(|t| std::iter::repeat_n(opt(t.interpreter_id), t.python_frames))
        .collect()
}

/// A merged stack, innermost first, one line per frame, as debuggers print it.
pub fn merged_stack(s: &mut String, stack: &pymortem::stacks::MergedStack) {
    use pymortem::stacks::StackFrame;
    use pymortem::unwind::Trust;
    if let Some(f) = &stack.fatal_error {
        let message = f.message.as_deref().map_or_else(
            || format!("message unknown: {}", esc(&f.message_source)),
            |m| format!("\"{}\"", esc(m)),
        );
        let _ = writeln!(s, "  Fatal error in {}: {message}", esc(&f.path));
    }
    let interpreters = python_frame_interpreters(stack);
    let mut python_index = 0;
    for (i, frame) in stack.frames.iter().enumerate() {
        match frame {
            StackFrame::Python(p) => {
                let kind = interpreters
                    .get(python_index)
                    .map_or("Python".to_string(), |id| {
                        format!("Python, interpreter {id}")
                    });
                python_index += 1;
                if let Some(reason) = &p.unreadable {
                    let _ = writeln!(
                        s,
                        "  #{i:<3} ({kind}) <unreadable frame {:#x}: {}>",
                        p.frame,
                        esc(reason)
                    );
                    continue;
                }
                let name = esc(p.qualname.as_deref().unwrap_or(&p.function));
                let line = p.line.map_or(String::new(), |l| format!(":{l}"));
                let recovered = if p.recovered { " [recovered]" } else { "" };
                let _ = writeln!(
                    s,
                    "  #{i:<3} ({kind}) {name} at {}{line}{recovered}",
                    esc(&p.file)
                );
            }
            StackFrame::Native(n) => {
                let function = match (&n.function, n.function_offset) {
                    (Some(f), Some(o)) => format!("{}+{o:#x}", esc(f)),
                    (Some(f), None) => esc(f).to_string(),
                    (None, _) => "??".to_string(),
                };
                let module = match (&n.module, n.module_offset) {
                    (Some(m), Some(o)) => format!("{}+{o:#x}", esc(m)),
                    (Some(m), None) => esc(m).to_string(),
                    (None, _) => "no module".to_string(),
                };
                let how = match n.trust {
                    Trust::Context => "context",
                    Trust::Cfi => "cfi",
                    Trust::FramePointer => "frame pointer",
                    Trust::Scan => "scan",
                    Trust::TailCall => "tail call",
                    _ => "unknown",
                };
                let pc = format!("{:#014x}", n.address.address());
                let signal = if n.signal_frame {
                    "  <signal handler called>"
                } else {
                    ""
                };
                // Inlined functions first, innermost first, as debuggers print them.
                for inlined in n.source.iter().rev().skip(1).rev() {
                    let name = esc(inlined.function.as_deref().unwrap_or("??"));
                    let at = source_line(inlined).map_or(String::new(), |l| format!(" at {l}"));
                    let _ = writeln!(s, "  #{i:<3} {:14} {name}{at} (inlined)", "");
                }
                let at = n
                    .source
                    .last()
                    .and_then(source_line)
                    .map_or(String::new(), |l| format!(" at {l}"));
                let _ = writeln!(
                    s,
                    "  #{i:<3} {pc} {function}{at} ({module}) [{how}]{signal}"
                );
            }
            _ => {}
        }
    }
    if let Some(stop) = &stack.native_stop {
        let _ = writeln!(s, "  (native unwind ended: {})", stop_text(stop));
    }
    if stack.unattached_python_frames > 0 {
        let _ = writeln!(
            s,
            "  ({} matched no eval-loop frame; shown last)",
            counted(
                stack.unattached_python_frames,
                "Python frame",
                "Python frames"
            )
        );
    }
}

fn source_line(f: &pymortem::dwarf::SourceFrame) -> Option<String> {
    let file = esc(f.file.as_deref()?);
    Some(match f.line {
        Some(l) => format!("{file}:{l}"),
        None => file.to_string(),
    })
}

fn stop_text(stop: &pymortem::unwind::StopReason) -> String {
    use pymortem::unwind::StopReason;
    match stop {
        StopReason::Outermost => "outermost frame".into(),
        StopReason::ReturnAddressZero => "return address 0".into(),
        StopReason::StackNotIncreasing => "the stack pointer did not move up".into(),
        StopReason::NoUnwindInfo(e) => format!("no unwind information: {}", esc(&e.to_string())),
        StopReason::Unreadable(e) => format!("unreadable: {}", esc(&e.to_string())),
        StopReason::TooDeep => "depth limit".into(),
        _ => "unknown".into(),
    }
}

fn diagnostics_lines(s: &mut String, diagnostics: &[pymortem::error::Diagnostic]) {
    if !diagnostics.is_empty() {
        let _ = writeln!(s, "\nDiagnostics:");
        for d in diagnostics {
            let _ = writeln!(
                s,
                "  {} [{}]: {}",
                json_name(&d.severity),
                esc(d.source.as_str()),
                esc(&d.message)
            );
        }
    }
}

fn crashed_stack(s: &mut String, lwp: Option<i32>, stack: Option<&pymortem::stacks::MergedStack>) {
    let Some(stack) = stack else {
        return;
    };
    let lwp = lwp.map_or(String::new(), |l| format!(" (LWP {l})"));
    let _ = writeln!(s, "\nCrashing thread{lwp}:");
    merged_stack(s, stack);
}

fn finding_lines(s: &mut String, findings: &[pymortem::forensics::Finding]) {
    for f in findings {
        let _ = writeln!(
            s,
            "  [{}] {} at {:#x}: {}",
            json_name(&f.severity),
            json_name(&f.kind),
            f.address,
            esc(&f.message)
        );
        for r in &f.referrers {
            let _ = writeln!(s, "      referrer: {} ({})", esc(&r.description), r.kind);
        }
    }
}

/// The `check`, `freelists` and `gc` reports.
pub fn check(r: &pymortem::report::CheckReport) -> String {
    let mut s = String::new();
    let python = r.python_version.as_deref().map_or_else(
        || "Not a Python process".to_string(),
        |v| format!("Python {}", esc(v)),
    );
    let pid = r.pid.map_or(String::new(), |p| format!(" · pid {p}"));
    let _ = writeln!(s, "{python}{pid}");
    if let Some(v) = &r.verdict
        && r.schema == "check"
    {
        let _ = writeln!(s, "\nVerdict ({}): {}", v.status, esc(&v.summary));
        let addresses = |list: &[u64]| {
            let shown: Vec<String> = list.iter().take(8).map(|a| format!("{a:#x}")).collect();
            let more = list.len().saturating_sub(shown.len());
            let tail = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{}{tail}", shown.join(", "))
        };
        if v.victims.len() > 1 {
            let _ = writeln!(s, "  victims: {}", addresses(&v.victims));
        }
        if !v.secondary_victims.is_empty() {
            let _ = writeln!(
                s,
                "  secondary victims (stale items of a freed victim): {}",
                addresses(&v.secondary_victims)
            );
        }
        if !v.threads.is_empty() {
            let threads: Vec<String> = v.threads.iter().map(|t| t.to_string()).collect();
            let _ = writeln!(s, "  threads involved: {}", threads.join(", "));
        }
        if let Some(e) = &v.fatal_error {
            let _ = writeln!(s, "  fatal error: {}", esc(e));
        }
    }
    if let Some(v) = &r.verdict {
        unchecked_lines(&mut s, &v.unchecked);
    }
    if !r.free_lists.is_empty() {
        let _ = writeln!(s, "\nFree lists:");
        let mut t = table(&[
            "interpreter",
            "list",
            "link",
            "head",
            "counter",
            "walked",
            "anomalies",
        ]);
        for slot in &r.free_lists {
            let anomalies: Vec<String> = slot.anomalies.iter().map(json_name).collect();
            let list = match slot.size {
                Some(size) => format!("{} (size {size})", slot.list),
                None => slot.list.clone(),
            };
            t.add_row(vec![
                slot.interpreter.map_or("-".into(), |i| format!("{i:#x}")),
                esc(&list).to_string(),
                slot.link.to_string(),
                format!("{:#x}", slot.head),
                opt(slot.counter),
                slot.walked.to_string(),
                anomalies.join(", "),
            ]);
        }
        let _ = writeln!(s, "{t}");
    }
    if !r.generations.is_empty() {
        let _ = writeln!(s, "\nGC generations ({} tracked objects):", r.gc_objects);
        let mut t = table(&[
            "generation",
            "head",
            "count",
            "threshold",
            "walked",
            "complete",
            "anomalies",
        ]);
        for g in &r.generations {
            t.add_row(vec![
                g.name.clone(),
                format!("{:#x}", g.head),
                opt(g.count),
                opt(g.threshold),
                g.walked.to_string(),
                g.complete.to_string(),
                g.anomalies.to_string(),
            ]);
        }
        let _ = writeln!(s, "{t}");
    }
    if r.schema == "gc" {
        if r.gc_stats.is_empty() && !r.generations.is_empty() {
            let _ = writeln!(
                s,
                "\nGC statistics: none (this version keeps none: gc.get_stats() is 3.4+)"
            );
        }
        gc_stats_lines(&mut s, &r.gc_stats);
    }
    let _ = writeln!(s, "\nFindings ({}):", r.findings.len());
    finding_lines(&mut s, &r.findings);
    crashed_stack(&mut s, None, r.crashed_thread_stack.as_ref());
    diagnostics_lines(&mut s, &r.diagnostics);
    s
}

/// The collector's statistics of each interpreter (the `gc` report): the
/// totals per generation, and from 3.15 the last collections, newest first.
fn gc_stats_lines(s: &mut String, stats: &[pymortem::forensics::gc_stats::GcStats]) {
    let seconds = |d: Option<f64>| d.map_or_else(|| "unknown".to_string(), |d| format!("{d:.6} s"));
    for g in stats {
        let whose = match (g.interpreter, g.interpreter_id) {
            (Some(a), Some(id)) => format!(" of interpreter {id} ({a:#x})"),
            (Some(a), None) => format!(" of interpreter {a:#x}"),
            _ => String::new(),
        };
        let at = match (g.address, g.pointer_at) {
            (Some(a), Some(_)) => format!(", struct gc_stats at {a:#x}"),
            (Some(a), None) => format!(", generation_stats at {a:#x}"),
            (None, Some(p)) => format!(", pointer at {p:#x}"),
            (None, None) => String::new(),
        };
        let _ = writeln!(s, "\nGC statistics{whose}{at}:");
        if let Some(reason) = &g.unreadable {
            let _ = writeln!(s, "  unreadable: {}", esc(reason));
            continue;
        }
        let newer = g
            .totals
            .iter()
            .any(|t| t.totals.candidates.is_some() || t.totals.duration.is_some());
        let _ = writeln!(
            s,
            "  totals since the interpreter started, as gc.get_stats() gives them:"
        );
        let mut header = vec!["generation", "collections", "collected", "uncollectable"];
        if newer {
            header.extend(["candidates", "duration"]);
        }
        let mut t = table(&header);
        for total in &g.totals {
            let n = &total.totals;
            let mut row = vec![
                total.generation.to_string(),
                opt(n.collections),
                opt(n.collected),
                opt(n.uncollectable),
            ];
            if newer {
                row.extend([opt(n.candidates), seconds(n.duration)]);
            }
            t.add_row(row);
        }
        let _ = writeln!(s, "{t}");
        if g.rings.is_empty() {
            continue;
        }
        if g.writing() {
            let _ = writeln!(
                s,
                "  a collection was writing its record when the process died (update_seq {} \
                 is odd): the newest record of its generation may be partial",
                opt(g.update_seq)
            );
        }
        // Starts are told from the end of the newest collection.
        let last = g
            .rings
            .iter()
            .flat_map(|r| &r.records)
            .filter_map(|c| c.ts_stop)
            .max();
        let _ = writeln!(
            s,
            "  last collections, newest first (start: how long before the newest one ended):"
        );
        for ring in &g.rings {
            let slots = counted(ring.slots as usize, "slot", "slots");
            if let Some(reason) = &ring.unreadable {
                let _ = writeln!(
                    s,
                    "  {} ({slots} at {:#x}): unreadable: {}",
                    ring.name,
                    ring.address,
                    esc(reason)
                );
                continue;
            }
            if ring.records.is_empty() {
                let _ = writeln!(s, "  {} ({slots}): no collection yet", ring.name);
                continue;
            }
            let _ = writeln!(s, "  {} ({slots}):", ring.name);
            let mut t = table(&[
                "number",
                "start",
                "duration",
                "collected",
                "uncollectable",
                "candidates",
                "heap size",
            ]);
            for c in &ring.records {
                let start = c.ts_start.zip(last).map(|(a, b)| span(a.saturating_sub(b)));
                t.add_row(vec![
                    c.collections.to_string(),
                    opt(start),
                    opt(c.duration.map(|d| span((d * 1e9) as i64))),
                    opt(c.collected),
                    opt(c.uncollectable),
                    opt(c.candidates),
                    opt(c.heap_size),
                ]);
            }
            let _ = writeln!(s, "{t}");
        }
    }
}

/// A span of nanoseconds in milliseconds, or seconds from one second.
fn span(ns: i64) -> String {
    if ns.unsigned_abs() >= 1_000_000_000 {
        format!("{:.3} s", ns as f64 / 1e9)
    } else {
        format!("{:.3} ms", ns as f64 / 1e6)
    }
}

/// The `object` report.
pub fn object(r: &pymortem::report::ObjectReport) -> String {
    let o = &r.object;
    let mut s = String::new();
    let _ = writeln!(s, "Object {:#x}", o.address);
    let _ = writeln!(
        s,
        "  type:       {} ({})",
        esc(o.type_name.as_deref().unwrap_or("unreadable")),
        o.type_address
            .map_or("its address unreadable".into(), |t| format!("{t:#x}"))
    );
    let _ = writeln!(
        s,
        "  refcount:   {}{}",
        opt(o.refcount),
        if o.immortal { " (immortal)" } else { "" }
    );
    let gc = if o.gc_header_stale {
        "stale header (the block is free)"
    } else {
        o.gc_state.map_or("no GC header", |g| g.as_str())
    };
    let _ = writeln!(
        s,
        "  GC:         {}{}",
        gc,
        o.gc_generation
            .as_ref()
            .map(|g| format!(", in {g}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "  free list:  {}",
        esc(o.free_list.as_deref().unwrap_or("no"))
    );
    let _ = writeln!(s, "  allocator:  {}", esc(&o.allocator.description));
    let _ = writeln!(s, "  owned refs: {}", o.owned_references);
    let _ = writeln!(s, "  repr:       {}", esc(&o.repr));
    let _ = writeln!(s, "  referrers ({}):", o.referrers.len());
    for r in &o.referrers {
        let _ = writeln!(s, "    {} ({})", esc(&r.description), r.kind);
    }
    if !o.findings.is_empty() {
        let _ = writeln!(s, "  findings:");
        finding_lines(&mut s, &o.findings);
    }
    unchecked_lines(&mut s, &o.unchecked);
    s
}

/// The checks that could not run: what, why, and what would let them.
fn unchecked_lines(s: &mut String, unchecked: &[pymortem::forensics::Unchecked]) {
    if unchecked.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nNot checked ({}): the result is incomplete",
        unchecked.len()
    );
    for u in unchecked {
        let _ = writeln!(s, "  {}: {}", u.check.describe(), esc(&u.reason));
    }
    // Most gaps share one cause: say each remedy once.
    let mut remedies: Vec<&str> = Vec::new();
    for u in unchecked {
        if !remedies.contains(&u.remedy.as_str()) {
            remedies.push(&u.remedy);
        }
    }
    for remedy in remedies {
        let _ = writeln!(s, "  To check them: {}", esc(remedy));
    }
}

/// Where a layout came from, in words, with why the cached entry was
/// rejected when it was.
pub(crate) fn layout_source_text(source: &pymortem::layout::LayoutSource) -> String {
    use pymortem::layout::LayoutSource;
    match source {
        LayoutSource::Dwarf {
            path,
            cached,
            cache_rejected,
            ..
        } => {
            let mut text = format!("DWARF in {}", esc_path(path));
            if *cached {
                text.push_str(" (cached)");
            }
            if let Some(why) = cache_rejected {
                let _ = write!(text, "; the cached layout failed validation: {}", esc(why));
            }
            text
        }
        LayoutSource::DebugOffsets {
            address,
            table,
            inferred: None,
        } => format!(
            "_Py_DebugOffsets at {address:#x}, completed from the built-in {} table",
            esc(table)
        ),
        LayoutSource::DebugOffsets {
            address,
            table,
            inferred: Some(i),
        } => {
            let guessed: Vec<&str> = i.guessed.iter().map(|m| m.member.as_str()).collect();
            let guessed = if guessed.is_empty() {
                "none".to_string()
            } else {
                guessed.join(", ")
            };
            format!(
                "_Py_DebugOffsets at {address:#x} (CPython {}, which has no table), read with the {} \
                 positions and completed from the built-in {} table; guessed: {}",
                esc(&i.version),
                esc(&i.positions),
                esc(table),
                esc(&guessed)
            )
        }
        LayoutSource::Table {
            table,
            micro,
            exact,
        } => {
            let exact = if *exact {
                ""
            } else {
                ", the nearest micro version"
            };
            format!("the built-in {} table ({}{exact})", esc(table), esc(micro))
        }
        _ => "unknown".to_string(),
    }
}

/// How the interpreters were found, in words.
pub(crate) fn runtime_strategy_text(
    strategy: pymortem::interpreter::runtime_address::RuntimeStrategy,
) -> &'static str {
    use pymortem::interpreter::runtime_address::RuntimeStrategy;
    match strategy {
        RuntimeStrategy::Symbol => "the _PyRuntime symbol",
        RuntimeStrategy::Section => "the .PyRuntime section",
        RuntimeStrategy::DebugOffsetsScan => "a scan for the _Py_DebugOffsets cookie",
        RuntimeStrategy::InterpHeadSymbol => "the interp_head symbol",
        RuntimeStrategy::InterpreterScan => "a scan of .data and .bss for an interpreter state",
        _ => "unknown",
    }
}

/// Who wrote the core, in words.
fn producer_text(producer: pymortem::corefile::Producer) -> &'static str {
    match producer {
        pymortem::corefile::Producer::Kernel => "the kernel",
        pymortem::corefile::Producer::Gdb => "gdb",
        pymortem::corefile::Producer::Other => "neither the kernel nor gdb (QEMU, say)",
        pymortem::corefile::Producer::Pymortem => "pymortem, from a live process",
        _ => "unknown",
    }
}

/// How the Python version was found, in words.
fn version_source_text(source: pymortem::layout::VersionSource) -> &'static str {
    use pymortem::layout::VersionSource;
    match source {
        VersionSource::PyVersionSymbol => "Py_Version",
        VersionSource::DebugOffsets => "_Py_DebugOffsets",
        VersionSource::VersionString => "the Py_GetVersion string",
        VersionSource::VersionStringScan => "a scan for the Py_GetVersion string",
        VersionSource::DebugOffsetsScan => "a scan for _Py_DebugOffsets",
        VersionSource::LibraryName => "the library's file name",
        _ => "unknown",
    }
}

/// The first line of `threads`: the version, where the layout came from and
/// how the interpreters were found; or that the core is not of a Python process.
fn python_header(r: &pymortem::report::ThreadsReport) -> String {
    let Some(version) = &r.python_version else {
        return "Not a Python process: no CPython interpreter was found in the core".into();
    };
    let mut line = format!("Python {}", esc(version));
    if let Some(source) = &r.layout_source {
        let _ = write!(line, " · layout from {}", layout_source_text(source));
    }
    if let Some(strategy) = r.runtime_strategy {
        let _ = write!(
            line,
            " · interpreters found by {}",
            runtime_strategy_text(strategy)
        );
    }
    line
}
