//! Choosing the layout for a process: DWARF (cached per build-id), then
//! `_Py_DebugOffsets`, then the built-in table, each attempt reported.

use std::path::PathBuf;

use serde::Serialize;

use super::{
    Layout, LayoutSource, cache, debug_offsets, from_dwarf, runtime_address, tables, validate,
};
use crate::dwarf::DwarfError;
use crate::modules::Module;
use crate::process::Process;

/// How to choose.
#[derive(Debug, Clone, Default)]
pub struct LayoutOptions {
    /// Skip the on-disk cache, neither reading nor writing it.
    pub no_cache: bool,
    /// The cache folder; the user's cache folder when `None`.
    pub cache_dir: Option<PathBuf>,
}

/// One source that was tried.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// `dwarf`, `cache`, `debug_offsets` or `table`.
    pub source: &'static str,
    /// What happened.
    pub outcome: String,
}

/// The chosen layout and how it was chosen.
#[derive(Debug, Clone, Serialize)]
pub struct LayoutChoice {
    /// The layout.
    pub layout: Layout,
    /// Every source tried, in order.
    pub attempts: Vec<Attempt>,
}

/// How `dwarf_layout` says the module has no DWARF at all (not a failure).
const NO_DWARF: &str = "has no DWARF available";

impl LayoutChoice {
    /// When the interpreter's DWARF was there but could not be used (damaged,
    /// or a compressed section declaring an implausible size), why, and which
    /// source the layout came from instead: a fallback the user should hear of.
    pub fn dwarf_passed_over(&self) -> Option<String> {
        let failed = self.attempts.iter().find(|a| {
            a.source == "dwarf" && a.outcome != "used" && !a.outcome.ends_with(NO_DWARF)
        })?;
        let used = self.attempts.last().map_or("?", |a| a.source);
        Some(format!(
            "the interpreter's DWARF could not be used ({}); the layout comes from {used} instead",
            failed.outcome
        ))
    }
}

/// Why no layout could be chosen.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no CPython layout: {}", attempts.iter().map(|a| format!("{}: {}", a.source, a.outcome)).collect::<Vec<_>>().join("; "))]
pub struct NoLayout {
    /// What was tried.
    pub attempts: Vec<Attempt>,
}

/// A free-threaded build (3.13t+): its objects have another header
/// (`ob_tid`, split refcounts, no GC list links), so no default-build
/// layout may be used to read it.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "free-threaded CPython {build} is not supported yet ({evidence}); its objects cannot be read \
     with a default build's layout, so no Python state is shown"
)]
pub struct FreeThreadedBuild {
    /// `3.13t`.
    pub build: String,
    /// What shows it is free-threaded.
    pub evidence: String,
}

/// Why no layout was chosen.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// No source gave a layout.
    #[error(transparent)]
    NoLayout(#[from] NoLayout),
    /// The interpreter is a build pymortem refuses to read.
    #[error(transparent)]
    FreeThreaded(#[from] FreeThreadedBuild),
}

/// Choose the layout for `process`; a free-threaded build is refused.
pub fn select(process: &Process, options: &LayoutOptions) -> Result<LayoutChoice, LayoutError> {
    let mut attempts = Vec::new();
    let mut note = |source, outcome: String| attempts.push(Attempt { source, outcome });
    let Some(version) = process.python() else {
        note("version", "no CPython version was found in the core".into());
        return Err(NoLayout { attempts }.into());
    };
    if let Some(evidence) = &version.free_threaded {
        return Err(FreeThreadedBuild {
            build: version.build_name(),
            evidence: evidence.clone(),
        }
        .into());
    }
    let v = version.version;
    let module = process.python_module().cloned();

    if let Some(module) = &module {
        match dwarf_layout(process, module, (v.major, v.minor, v.micro), options) {
            // DWARF describes the build itself: `ob_tid` exists only with Py_GIL_DISABLED.
            Ok((layout, _)) if layout.field("PyObject", "ob_tid").is_some() => {
                return Err(FreeThreadedBuild {
                    build: format!("{}.{}t", v.major, v.minor),
                    evidence: format!("{}'s DWARF gives PyObject an ob_tid member", module.name()),
                }
                .into());
            }
            Ok((layout, how)) => {
                if let LayoutSource::Dwarf {
                    cache_rejected: Some(why),
                    ..
                } = &layout.source
                {
                    note("cache", format!("rejected: {why}"));
                }
                note(
                    if how == "cache" { "cache" } else { "dwarf" },
                    "used".into(),
                );
                return Ok(LayoutChoice { layout, attempts });
            }
            Err(reason) => note("dwarf", reason.to_string()),
        }
    }

    let table = tables::builtin(v.major, v.minor);
    let micro = v.to_string();
    if (v.major, v.minor) >= (3, 13) {
        let found = module
            .as_ref()
            .and_then(|m| runtime_address::find(process.core(), process.memory(), m));
        match (found, &table) {
            (Some((addr, _)), Some(t)) => {
                match debug_offsets::apply(process.memory(), addr, t.layout_for(&micro)) {
                    Some((layout, _, changed)) => {
                        let detail = if changed.is_empty() {
                            "used; agrees with the table".to_string()
                        } else {
                            format!("used; differs from the table in {}", changed.join(", "))
                        };
                        note("debug_offsets", format!("{detail} (at {addr:#x})"));
                        return Ok(LayoutChoice { layout, attempts });
                    }
                    None => note(
                        "debug_offsets",
                        format!("no valid _Py_DebugOffsets at {addr:#x}"),
                    ),
                }
            }
            (None, _) => note("debug_offsets", "_PyRuntime not found".into()),
            (_, None) => note(
                "debug_offsets",
                format!("no table for {}.{} to complete it", v.major, v.minor),
            ),
        }
    }
    match table {
        Some(t) if !t.structs.is_empty() => {
            let layout = t.layout_for(&micro);
            if let LayoutSource::Table {
                exact, micro: used, ..
            } = &layout.source
            {
                let how = if *exact {
                    "used".to_string()
                } else {
                    format!("used the {used} layout for {micro}")
                };
                note("table", how);
            }
            Ok(LayoutChoice { layout, attempts })
        }
        _ => {
            note(
                "table",
                format!("no built-in table for {}.{}", v.major, v.minor),
            );
            Err(NoLayout { attempts }.into())
        }
    }
}

/// Why the module's DWARF gave no layout.
#[derive(Debug, Clone, thiserror::Error)]
enum DwarfLayoutError {
    /// The module has no DWARF at all (not a failure).
    #[error("{0} {NO_DWARF}")]
    NoDwarf(String),
    /// Its DWARF could not be read.
    #[error(transparent)]
    Dwarf(#[from] DwarfError),
}

/// The layout from the module's DWARF, through the cache.
fn dwarf_layout(
    process: &Process,
    module: &Module,
    version: (u8, u8, Option<u8>),
    options: &LayoutOptions,
) -> Result<(Layout, &'static str), DwarfLayoutError> {
    let Some(debug) = module.debug_file().filter(|d| d.has_dwarf()) else {
        return Err(DwarfLayoutError::NoDwarf(module.name().to_string()));
    };
    let build_id = module.build_id_hex();
    let cache_dir = if options.no_cache {
        None
    } else {
        options.cache_dir.clone().or_else(cache::default_dir)
    };
    let mut rejected = None;
    if let (Some(dir), Some(id)) = (&cache_dir, &build_id)
        && let Some(layout) = cache::load(dir, id)
    {
        // Anyone may have edited the entry: it must describe this core.
        match validate::check(&layout, process.memory(), module) {
            Ok(_) => return Ok((layout, "cache")),
            Err(why) => rejected = Some(why.to_string()),
        }
    }
    let mut layout = from_dwarf(debug, build_id.clone(), version)?;
    if let (Some(dir), Some(id)) = (&cache_dir, &build_id) {
        // A cache that cannot be written only costs time next run; a
        // rejected entry is overwritten here.
        let _ = cache::store(dir, id, &layout);
    }
    if let LayoutSource::Dwarf { cache_rejected, .. } = &mut layout.source {
        *cache_rejected = rejected;
    }
    Ok((layout, "dwarf"))
}
