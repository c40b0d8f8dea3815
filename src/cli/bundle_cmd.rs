//! `pymortem bundle`: a core and the files it needs, in one archive.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use pymortem::bundle::Role;
use pymortem::bundler::{BundleOptions, BundleReport};

use super::{CoreArgs, EXIT_OK, emit, escape, fail};

#[derive(Debug, Args)]
pub(crate) struct BundleArgs {
    #[command(flatten)]
    core: CoreArgs,
    /// The archive to write (tar + zstd; layout in docs/bundle.md). Replaced atomically.
    #[arg(short = 'o', long = "output", value_name = "OUT.pymortem")]
    output: PathBuf,
    /// Leave out separate debug files (symbols and layouts then come from what the modules hold).
    #[arg(long)]
    no_debug: bool,
    /// The zstd level, 1 (fast) to 19 (small).
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(i32).range(1..=19))]
    level: i32,
}

pub(crate) fn run(args: &BundleArgs) -> i32 {
    let Some(core) = &args.core.core else {
        return fail(
            "bundle takes a core file: for a running process, write one first with `pymortem snapshot PID -o FILE`",
        );
    };
    let process = match args.core.open() {
        Ok(p) => p,
        Err(message) => return fail(&message),
    };
    let options = BundleOptions {
        debug_files: !args.no_debug,
        level: args.level,
    };
    let report = match pymortem::bundler::create(&process, core, &args.output, &options) {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot write the bundle: {e}")),
    };
    let _ = std::io::stderr().write_all(escape::terminal_text(&summary(&report)).as_bytes());
    if args.core.json {
        let out = serde_json::to_string_pretty(&report)
            .map(|s| s + "\n")
            .unwrap_or_default();
        return emit(&out);
    }
    EXIT_OK
}

/// What was included and left out, for stderr.
fn summary(report: &BundleReport) -> String {
    let role = |r: Role| match r {
        Role::Executable => "executable",
        Role::Library => "library",
        Role::DebugFile => "debug file",
        _ => "file",
    };
    let mut out = format!(
        "{}: {} bytes ({:.1} MiB; {:.1} MiB before compression)\n  core       {} ({} bytes)\n",
        report.output.display(),
        report.size,
        report.size as f64 / 1048576.0,
        report.stored_bytes as f64 / 1048576.0,
        report.manifest.core.name,
        report.manifest.core.size
    );
    for f in &report.manifest.files {
        out += &format!(
            "  {:<10} {} ({} bytes, build-id {})\n",
            role(f.role),
            f.path,
            f.size,
            f.build_id
        );
    }
    if !report.manifest.omitted.is_empty() {
        let n = report.manifest.omitted.len();
        out += &format!(
            "not included ({n} file{}):\n",
            if n == 1 { "" } else { "s" }
        );
        for o in &report.manifest.omitted {
            out += &format!("  {:<10} {}: {}\n", role(o.role), o.path, o.reason);
        }
    }
    out
}
