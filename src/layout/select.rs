//! Choosing the layout for a process: DWARF (cached per build-id), then
//! `_Py_DebugOffsets`, then the built-in table, each attempt reported.

use std::path::PathBuf;

use serde::Serialize;

use super::{Layout, LayoutSource, cache, debug_offsets, from_dwarf, tables, validate};
use crate::dwarf::DwarfError;
use crate::interpreter::VersionInfo;
use crate::interpreter::runtime_address;
use crate::memory::ProcessMemory;
use crate::modules::Module;
use crate::modules::ModuleSet;

/// How to choose.
#[derive(Debug, Clone, Default)]
pub struct LayoutOptions {
    /// Skip the on-disk cache, neither reading nor writing it.
    pub no_cache: bool,
    /// The cache folder; the user's cache folder when `None`.
    pub cache_dir: Option<PathBuf>,
}

/// Where a layout may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptSource {
    /// The version, without which no source is tried.
    Version,
    /// The interpreter's DWARF.
    Dwarf,
    /// The layout cache (DWARF read before).
    Cache,
    /// `_Py_DebugOffsets` in the core.
    DebugOffsets,
    /// A built-in table.
    Table,
}

impl AttemptSource {
    /// Its name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptSource::Version => "version",
            AttemptSource::Dwarf => "dwarf",
            AttemptSource::Cache => "cache",
            AttemptSource::DebugOffsets => "debug_offsets",
            AttemptSource::Table => "table",
        }
    }
}

impl std::fmt::Display for AttemptSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One source that was tried.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// Which source.
    pub source: AttemptSource,
    /// What happened.
    pub outcome: String,
    /// The source was there but could not be used (damaged DWARF, say),
    /// as opposed to used or absent.
    #[serde(skip)]
    pub unusable: bool,
    /// The source was damaged in the core and another copy of it was used
    /// (`_Py_DebugOffsets` from the interpreter's file): a warning.
    #[serde(skip)]
    pub damaged: bool,
}

impl Attempt {
    /// An attempt at `source` that came to `outcome`.
    pub fn new(source: AttemptSource, outcome: String) -> Attempt {
        Attempt {
            source,
            outcome,
            unusable: false,
            damaged: false,
        }
    }
}

/// The chosen layout and how it was chosen.
#[derive(Debug, Clone, Serialize)]
pub struct LayoutChoice {
    /// The layout.
    pub layout: Layout,
    /// Every source tried, in order.
    pub attempts: Vec<Attempt>,
}

impl LayoutChoice {
    /// When the interpreter's DWARF was there but could not be used (damaged,
    /// or a compressed section declaring an implausible size), why, and which
    /// source the layout came from instead: a fallback the user should hear of.
    pub fn dwarf_passed_over(&self) -> Option<String> {
        let failed = self
            .attempts
            .iter()
            .find(|a| a.source == AttemptSource::Dwarf && a.unusable)?;
        let used = self.attempts.last().map_or("?", |a| a.source.as_str());
        Some(format!(
            "the interpreter's DWARF could not be used ({}); the layout comes from {used} instead",
            failed.outcome
        ))
    }

    /// When the core's `_Py_DebugOffsets` was damaged and the copy in the
    /// interpreter's file was used instead: what differed.
    pub fn debug_offsets_damaged(&self) -> Option<&str> {
        self.attempts
            .iter()
            .find(|a| a.source == AttemptSource::DebugOffsets && a.damaged)
            .map(|a| a.outcome.as_str())
    }
}

/// `_Py_DebugOffsets` as the core holds it and as the interpreter's file
/// was built with it. The process never writes the table, so the two are
/// equal unless the core's copy was damaged (a stray write, a bad dump).
struct DebugOffsetsCopies {
    address: u64,
    in_core: Option<(Layout, Vec<String>)>,
    in_file: Option<(Layout, Vec<String>)>,
    file_name: String,
    // Members whose values differ, when both copies were read.
    differ: Vec<&'static str>,
}

impl DebugOffsetsCopies {
    fn read(
        memory: &ProcessMemory,
        module: Option<&Module>,
        address: u64,
        base: &Layout,
    ) -> DebugOffsetsCopies {
        let in_core = debug_offsets::apply(memory, address, base.clone()).map(|(l, _, c)| (l, c));
        let file = module.and_then(|m| debug_offsets::file_copy(m, address));
        let in_file = file
            .as_ref()
            .and_then(|f| debug_offsets::apply(f, address, base.clone()))
            .map(|(l, _, c)| (l, c));
        let differ = match (&file, &in_file) {
            (Some(f), Some(_)) => debug_offsets::differences(f, memory, address),
            _ => Vec::new(),
        };
        DebugOffsetsCopies {
            address,
            in_core,
            in_file,
            file_name: module.map_or_else(String::new, |m| m.name().to_string()),
            differ,
        }
    }

    /// The layout to use, what differs from the table, and, when the core's
    /// copy was damaged, how.
    fn choose(self) -> Option<(Layout, Vec<String>, Option<String>)> {
        let address = self.address;
        match (self.in_core, self.in_file) {
            (Some((layout, changed)), _) if self.differ.is_empty() => Some((layout, changed, None)),
            (core, Some((layout, changed))) => {
                let what = if core.is_none() {
                    "is not a valid table".to_string()
                } else {
                    format!("differs from the file's in {}", self.differ.join(", "))
                };
                Some((
                    layout,
                    changed,
                    Some(format!(
                        "the core's _Py_DebugOffsets at {address:#x} {what}: damaged; \
                         the copy in {}'s .PyRuntime section is used",
                        self.file_name
                    )),
                ))
            }
            (core, None) => core.map(|(layout, changed)| (layout, changed, None)),
        }
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

/// Choose the layout for the interpreter of `version` among `modules`,
/// whose memory is `memory`; a free-threaded build is refused.
pub fn select(
    version: Option<&VersionInfo>,
    modules: &ModuleSet,
    memory: &ProcessMemory,
    options: &LayoutOptions,
) -> Result<LayoutChoice, LayoutError> {
    let mut attempts = Vec::new();
    // A macro, not a closure, so that `attempts` stays free for a push of its own.
    macro_rules! note {
        ($source:expr, $outcome:expr $(,)?) => {
            attempts.push(Attempt::new($source, $outcome))
        };
    }
    let Some(version) = version else {
        note!(
            AttemptSource::Version,
            "no CPython version was found in the core".into()
        );
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
    let module = modules.by_recorded_path(&version.module).cloned();

    if let Some(module) = &module {
        match dwarf_layout(memory, module, (v.major, v.minor, v.micro), options) {
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
                    note!(AttemptSource::Cache, format!("rejected: {why}"));
                }
                note!(
                    if how == "cache" {
                        AttemptSource::Cache
                    } else {
                        AttemptSource::Dwarf
                    },
                    "used".into(),
                );
                return Ok(LayoutChoice { layout, attempts });
            }
            Err(reason) => attempts.push(Attempt {
                source: AttemptSource::Dwarf,
                outcome: reason.to_string(),
                // No DWARF at all is no failure; DWARF that cannot be read is.
                unusable: matches!(reason, DwarfLayoutError::Dwarf(_)),
                damaged: false,
            }),
        }
    }

    let table = tables::builtin(v.major, v.minor);
    let micro = v.to_string();
    if (v.major, v.minor) >= (3, 13) {
        let found = module
            .as_ref()
            .and_then(|m| runtime_address::find(memory.core(), memory, m));
        match (found, &table) {
            (Some((addr, _)), Some(t)) => {
                let base = t.layout_for(&micro);
                let copies = DebugOffsetsCopies::read(memory, module.as_deref(), addr, &base);
                match copies.choose() {
                    Some((layout, changed, damage)) => {
                        let detail = if changed.is_empty() {
                            "used; agrees with the table".to_string()
                        } else {
                            format!("used; differs from the table in {}", changed.join(", "))
                        };
                        let completed = match &layout.source {
                            LayoutSource::DebugOffsets { table, .. } => {
                                format!("; the members it lacks come from the table {table}")
                            }
                            _ => String::new(),
                        };
                        let damaged = damage.is_some();
                        attempts.push(Attempt {
                            source: AttemptSource::DebugOffsets,
                            outcome: match damage {
                                Some(why) => format!("{why}; {detail}{completed}"),
                                None => format!("{detail} (at {addr:#x}){completed}"),
                            },
                            unusable: false,
                            damaged,
                        });
                        return Ok(LayoutChoice { layout, attempts });
                    }
                    None => note!(
                        AttemptSource::DebugOffsets,
                        format!("no valid _Py_DebugOffsets at {addr:#x}"),
                    ),
                }
            }
            (None, _) => note!(AttemptSource::DebugOffsets, "_PyRuntime not found".into()),
            (_, None) => note!(
                AttemptSource::DebugOffsets,
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
                note!(AttemptSource::Table, how);
            }
            Ok(LayoutChoice { layout, attempts })
        }
        _ => {
            note!(
                AttemptSource::Table,
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
    #[error("{0} has no DWARF available")]
    NoDwarf(String),
    /// Its DWARF could not be read.
    #[error(transparent)]
    Dwarf(#[from] DwarfError),
}

/// The layout from the module's DWARF, through the cache.
fn dwarf_layout(
    memory: &ProcessMemory,
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
        && let Some(layout) = cache::load(dir, id, (version.0, version.1))
    {
        // Anyone may have edited the entry: it must describe this core.
        match validate::check(&layout, memory, module) {
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
