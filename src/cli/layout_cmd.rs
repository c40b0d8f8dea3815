//! `pymortem layout`: print a layout and its source, or emit the built-in tables.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use comfy_table::{Table, presets};

use pymortem::layout::select::{Attempt, AttemptSource};
use pymortem::layout::tables::{TableFile, TableSource};
use pymortem::layout::{Layout, LayoutOptions, PythonVersion, from_dwarf, select};
use pymortem::modules::{ElfImage, find_debug_file, hex};
use pymortem::report::LayoutReport;

use super::escape::{esc, esc_path};
use super::render::{fit_table, layout_source_text, runtime_strategy_text};
use super::{SearchArgs, emit, fail, open_core, print_report};

#[derive(Debug, Args)]
pub struct LayoutArgs {
    /// A core, or an interpreter binary or library (its DWARF, or its separate
    /// debug file found by build-id or debug link). With --emit: VERSION=PATH.
    #[arg(required = true)]
    targets: Vec<String>,
    #[command(flatten)]
    search: SearchArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: super::CacheArgs,
    /// The CPython version of a binary whose version cannot be read from it (before 3.11).
    #[arg(long, value_name = "X.Y.Z")]
    python_version: Option<String>,
    /// Write the built-in tables (cpython-X.Y.toml) into DIR from targets given as VERSION=PATH.
    #[arg(long, value_name = "DIR")]
    emit: Option<PathBuf>,
}

pub fn run(args: &LayoutArgs) -> i32 {
    if let Some(dir) = &args.emit {
        return emit_tables(args, dir);
    }
    let [target] = args.targets.as_slice() else {
        return fail("layout takes one core or binary (several only with --emit)");
    };
    let path = Path::new(target);
    let report = if is_core(path) {
        core_layout(args, path)
    } else {
        binary_layout(args, path, args.python_version.as_deref())
    };
    match report {
        Ok(report) => print_report(args.json, &report, render),
        Err(message) => fail(&message),
    }
}

/// ELF cores have `e_type` ET_CORE; compressed files are taken to be cores.
fn is_core(path: &Path) -> bool {
    let mut head = [0u8; 18];
    let Ok(mut f) = pymortem::regular_file::open_regular(path) else {
        return true;
    };
    if std::io::Read::read_exact(&mut f, &mut head).is_err() {
        return true;
    }
    &head[..4] != b"\x7fELF" || u16::from_le_bytes([head[16], head[17]]) == 4
}

fn core_layout(args: &LayoutArgs, path: &Path) -> Result<LayoutReport, String> {
    let process = open_core(path, &args.search)?;
    let options: LayoutOptions = args.cache.options();
    let choice = select(
        process.python(),
        process.modules(),
        process.memory(),
        &options,
    )
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let version = process.python().map(|p| p.version.to_string());
    let runtime = pymortem::python::locate(&process, &choice.layout);
    let mut report = LayoutReport::new(path.to_path_buf(), version, choice.attempts, choice.layout);
    match runtime {
        Ok(r) => report.runtime = Some(r),
        Err(e) => report.runtime_error = Some(e.to_string()),
    }
    Ok(report)
}

fn binary_layout(
    args: &LayoutArgs,
    path: &Path,
    version: Option<&str>,
) -> Result<LayoutReport, String> {
    let image = ElfImage::open(path)
        .ok_or_else(|| format!("{}: not a readable ELF file", path.display()))?;
    let build_id = image.build_id();
    let search = args.search.options().search;
    let (debug, how) = if image.has_dwarf() {
        (image.clone(), format!("DWARF in {}", path.display()))
    } else {
        let (found, via) = find_debug_file(
            &search,
            build_id.as_deref(),
            Some(&image),
            &path.to_string_lossy(),
        )
        .ok_or_else(|| {
            format!(
                "{}: no DWARF, and no debug file found by build-id or debug link; pass --debug-dir",
                path.display()
            )
        })?;
        let via = super::render::json_name(&via).replace('_', " ");
        let how = format!("DWARF in {} (found by {via})", found.path().display());
        (found, how)
    };
    // A dwz supplementary file, which its DWARF may refer to; without it
    // from_dwarf says the DWARF is incomplete.
    let (debug, _, _) = pymortem::modules::with_supplementary_file(&search, debug);
    let version = match version {
        Some(text) => PythonVersion::parse(text)
            .ok_or_else(|| format!("--python-version {text}: not X.Y.Z"))?,
        None => py_version_of(&image).ok_or_else(|| {
            format!(
                "{}: cannot read Py_Version (before 3.11); pass --python-version X.Y.Z",
                path.display()
            )
        })?,
    };
    let layout = from_dwarf(
        &debug,
        build_id.as_deref().map(hex),
        (version.major, version.minor, version.micro),
    )
    .map_err(|e| e.to_string())?;
    let attempts = vec![Attempt::new(AttemptSource::Dwarf, how)];
    Ok(LayoutReport::new(
        path.to_path_buf(),
        Some(version.to_string()),
        attempts,
        layout,
    ))
}

/// `Py_Version` (3.11+) read from the file's `.rodata`.
fn py_version_of(image: &ElfImage) -> Option<PythonVersion> {
    let symbols = pymortem::symbols::find_in_images(&[image], "Py_Version", None)?;
    let bytes = image.read_at_address(symbols.0, 4)?;
    PythonVersion::from_hex(u64::from(u32::from_le_bytes(bytes.try_into().ok()?)))
}

fn emit_tables(args: &LayoutArgs, dir: &Path) -> i32 {
    let mut groups: BTreeMap<String, BTreeMap<String, (Layout, TableSource)>> = BTreeMap::new();
    for target in &args.targets {
        let Some((version, path)) = target.split_once('=') else {
            return fail(&format!("--emit takes VERSION=PATH, got {target}"));
        };
        let report = match binary_layout(args, Path::new(path), Some(version)) {
            Ok(r) => r,
            Err(message) => return fail(&message),
        };
        let Some(v) = PythonVersion::parse(version) else {
            return fail(&format!("{version}: not X.Y.Z"));
        };
        let image = ElfImage::open(Path::new(path));
        let source = TableSource {
            module: Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            build_id: image.and_then(|i| i.build_id()).map(|id| hex(&id)),
        };
        let mut layout = report.layout;
        let missing: Vec<&str> = pymortem::layout::spec::REQUIRED
            .iter()
            .copied()
            .filter(|name| !layout.structs.contains_key(*name))
            .collect();
        if !missing.is_empty() {
            return fail(&format!(
                "{path}: its DWARF lacks {}; is this the module that holds the interpreter?",
                missing.join(", ")
            ));
        }
        // Tables carry no per-build data.
        layout.globals.clear();
        groups
            .entry(format!("{}.{}", v.major, v.minor))
            .or_default()
            .insert(v.to_string(), (layout, source));
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(&format!("{}: {e}", dir.display()));
    }
    let mut written = String::new();
    for (minor, layouts) in &groups {
        let Some(table) = TableFile::from_layouts(minor, layouts) else {
            continue;
        };
        let path = dir.join(format!("cpython-{minor}.toml"));
        if let Err(e) = std::fs::write(&path, table.to_toml()) {
            return fail(&format!("{}: {e}", path.display()));
        }
        let _ = writeln!(
            written,
            "{} ({})",
            path.display(),
            super::render::counted(layouts.len(), "micro version", "micro versions")
        );
    }
    emit(&written)
}

fn render(r: &LayoutReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Target:  {}", esc_path(&r.target));
    let _ = writeln!(
        s,
        "Python:  {}",
        esc(r.python_version.as_deref().unwrap_or("unknown"))
    );
    let _ = writeln!(s, "Source:  {}", layout_source_text(&r.layout.source));
    for a in &r.attempts {
        let _ = writeln!(s, "  tried {}: {}", esc(a.source.as_str()), esc(&a.outcome));
    }
    match (&r.runtime, &r.runtime_error) {
        (Some(rt), _) => {
            let interps: Vec<String> = rt.interpreters.iter().map(|a| format!("{a:#x}")).collect();
            let at = rt
                .runtime
                .map(|a| format!(" at {a:#x}"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "Runtime: found by {}{at}, interpreters {}",
                runtime_strategy_text(rt.strategy),
                interps.join(", ")
            );
        }
        (None, Some(e)) => {
            let _ = writeln!(s, "Runtime: not found: {}", esc(e));
        }
        _ => {}
    }
    let _ = writeln!(s, "Facts:");
    for (name, value) in facts_lines(&r.layout.facts) {
        let _ = writeln!(s, "  {name}: {value}");
    }
    for (name, st) in &r.layout.structs {
        let _ = writeln!(s, "\n{name} ({}, {} bytes)", st.c_name, st.size);
        let mut t = Table::new();
        t.load_style(presets::NOTHING);
        t.set_header(vec!["field", "C member", "offset", "size", "bits"]);
        fit_table(&mut t);
        for (field, f) in &st.fields {
            let bits = match (f.bit_offset, f.bit_size) {
                (Some(o), Some(n)) => format!("{}:{}", o, n),
                _ => String::new(),
            };
            t.add_row(vec![
                field.clone(),
                f.c_path.clone(),
                f.offset.to_string(),
                f.size.to_string(),
                bits,
            ]);
        }
        let _ = writeln!(s, "{t}");
    }
    if !r.layout.globals.is_empty() {
        let _ = writeln!(s, "\nStatic variables (link-time addresses):");
        for (name, addr) in &r.layout.globals {
            let _ = writeln!(s, "  {name} = {addr:#x}");
        }
    }
    s
}

/// The layout's facts, one `name: value` each, values as the JSON names them.
fn facts_lines(facts: &pymortem::layout::Facts) -> Vec<(String, String)> {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(facts) else {
        return Vec::new();
    };
    map.into_iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(text) => text,
                serde_json::Value::Null => "none".to_string(),
                other => other.to_string(),
            };
            (name, value)
        })
        .collect()
}
