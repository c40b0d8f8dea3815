//! Choosing the layout for a process: DWARF (cached per build-id), then
//! `_Py_DebugOffsets`, then the built-in table, each attempt reported.

use std::path::PathBuf;

use serde::Serialize;

use super::{Layout, LayoutSource, cache, debug_offsets, from_dwarf, infer, tables, validate};
use crate::dwarf::DwarfError;
use crate::interpreter::runtime_address;
use crate::interpreter::{PythonVersion, VersionInfo};
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
    /// Ignore the built-in tables and `_Py_DebugOffsets` positions of every
    /// minor version newer than this `(major, minor)`: how a version that
    /// has none yet is read, tested on one that has them. `None`: use all.
    pub newest_known: Option<(u8, u8)>,
}

impl LayoutOptions {
    /// Whether the tables and positions of `major.minor` may be used.
    fn knows(&self, major: u8, minor: u8) -> bool {
        self.newest_known.is_none_or(|n| (major, minor) <= n)
    }
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

    /// When the layout was inferred for a version pymortem has no table for
    /// ([`infer`]): what was guessed, and that stacks and objects read with
    /// it may be wrong, a warning.
    pub fn inferred(&self) -> Option<String> {
        let LayoutSource::DebugOffsets {
            table,
            inferred: Some(i),
            ..
        } = &self.layout.source
        else {
            return None;
        };
        let guessed: Vec<&str> = i.guessed.iter().map(|m| m.member.as_str()).collect();
        let guessed = if guessed.is_empty() {
            "no member it describes is guessed".to_string()
        } else {
            format!(
                "{} of its members could not be placed and are guessed from that table ({})",
                guessed.len(),
                guessed.join(", ")
            )
        };
        Some(format!(
            "pymortem has no layout for CPython {}: it was inferred from the core's \
             _Py_DebugOffsets, read with the {} member positions and completed from the {table} \
             table; {guessed}, and every field _Py_DebugOffsets does not describe is taken from \
             that table (moved as the placed field before it moved): Python stacks and objects \
             may be wrong",
            i.version, i.positions
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

    let arch = memory.core().arch();
    let table =
        tables::builtin_for(arch, v.major, v.minor).filter(|_| options.knows(v.major, v.minor));
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
            (Some((addr, _)), None) => {
                if let Some(layout) =
                    inferred_layout(memory, module.as_deref(), addr, v, options, &mut attempts)
                {
                    return Ok(LayoutChoice { layout, attempts });
                }
            }
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
                format!(
                    "no built-in {} table for {}.{}",
                    arch.name(),
                    v.major,
                    v.minor
                ),
            );
            Err(NoLayout { attempts }.into())
        }
    }
}

/// The nearest table older than `v` that `options` allow.
fn nearest_older_table(
    arch: crate::arch::ArchId,
    v: PythonVersion,
    options: &LayoutOptions,
) -> Option<&'static tables::TableFile> {
    tables::tables_for(arch)
        .iter()
        .filter_map(|(name, _)| {
            let (major, minor) = name.split_once('.')?;
            Some((major.parse::<u8>().ok()?, minor.parse::<u8>().ok()?))
        })
        .filter(|&(major, minor)| {
            (major, minor) < (v.major, v.minor) && options.knows(major, minor)
        })
        .max()
        .and_then(|(major, minor)| tables::builtin_for(arch, major, minor))
        .filter(|t| !t.structs.is_empty())
}

/// A layout for a version with no table (3.16 the day it ships): the core's
/// `_Py_DebugOffsets` aligned with the positions of each known version,
/// newest first, over the nearest older table, until one passes the checks
/// against the core ([`infer`]). Every candidate is reported.
fn inferred_layout(
    memory: &ProcessMemory,
    module: Option<&Module>,
    address: u64,
    v: PythonVersion,
    options: &LayoutOptions,
    attempts: &mut Vec<Attempt>,
) -> Option<Layout> {
    let name = format!("{}.{}", v.major, v.minor);
    let pretending = match options.newest_known {
        Some((major, minor)) if !options.knows(v.major, v.minor) => {
            format!(" (tables and positions newer than {major}.{minor} are ignored)")
        }
        _ => String::new(),
    };
    let mut note = |outcome: String, damaged: bool| {
        attempts.push(Attempt {
            source: AttemptSource::DebugOffsets,
            outcome,
            unusable: false,
            damaged,
        })
    };
    let (Some(module), Some(table)) = (
        module,
        nearest_older_table(memory.core().arch(), v, options),
    ) else {
        note(
            format!("no table for {name}{pretending}, and none older to complete it"),
            false,
        );
        return None;
    };
    let base = table.layout_for(&v.to_string());
    let base_name = match &base.source {
        LayoutSource::Table { table, micro, .. } => format!("{table} ({micro})"),
        _ => table.version.clone(),
    };
    let candidates: Vec<(u8, u8)> = debug_offsets::versions_with_positions()
        .into_iter()
        .filter(|&(major, minor)| {
            (major, minor) <= (v.major, v.minor) && options.knows(major, minor)
        })
        .collect();
    let predicted = infer::type_object_predictions(memory, module, &base);
    let threads = memory.core().threads();
    let mut refusals = Vec::new();
    for known in candidates {
        let positions = format!("{}.{}", known.0, known.1);
        // The process never writes the table: when the file's copy reads
        // otherwise than the core's, the core's is damaged and the file's is
        // used. (The words that follow the table are the runtime's, which
        // the process does write, so the copies are compared by what they
        // give, not word by word.)
        let in_core = infer::read_with_positions(memory, address, known, base.clone(), &predicted);
        let in_file = debug_offsets::file_bytes(module, address, infer::MAX_EXTENT)
            .map(|f| infer::read_with_positions(&f, address, known, base.clone(), &predicted));
        let (read, damaged) = match (in_core, in_file) {
            (Ok(core), Some(Ok(file))) if core.layout != file.layout => (Ok(file), true),
            (Err(_), Some(Ok(file))) => (Ok(file), true),
            (core, _) => (core, false),
        };
        let checked = read.and_then(|read| {
            let layout = &read.layout;
            // Against the core: the static types, the interpreter list and
            // the thread states' ids. A core without the interpreter's file
            // has no symbols for the first two; the thread ids still hold.
            let held = match validate::check(layout, memory, module) {
                Ok(n) => n,
                Err(validate::InvariantError::NothingChecked) => 0,
                Err(why) => return Err(infer::Refused(why.to_string())),
            };
            let threads = validate::check_thread_ids(layout, memory, address, threads)
                .map_err(|why| infer::Refused(why.to_string()))?;
            Ok((read, held + threads))
        });
        match checked {
            Ok((
                infer::Inferred {
                    layout,
                    changed,
                    moved,
                },
                held,
            )) => {
                let (placed, guessed) = match &layout.source {
                    LayoutSource::DebugOffsets {
                        inferred: Some(i), ..
                    } => (
                        i.placed.len(),
                        i.guessed
                            .iter()
                            .map(|m| m.member.as_str())
                            .collect::<Vec<_>>(),
                    ),
                    _ => (0, Vec::new()),
                };
                let guessed = if guessed.is_empty() {
                    "none guessed".to_string()
                } else {
                    format!("{} guessed: {}", guessed.len(), guessed.join(", "))
                };
                let differs = if changed.is_empty() {
                    String::new()
                } else {
                    format!("; differs from the table in {}", changed.join(", "))
                };
                let moved = if moved.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", those after a placed field that moved moved with it ({})",
                        moved.join(", ")
                    )
                };
                let copy = if damaged {
                    format!(
                        "the core's copy differs from the one in {}'s .PyRuntime section: damaged; \
                         the file's is read; ",
                        module.name()
                    )
                } else {
                    String::new()
                };
                let refused = if refusals.is_empty() {
                    String::new()
                } else {
                    format!(" (refused first: {})", refusals.join("; "))
                };
                note(
                    format!(
                        "used, inferred: no positions or table for {name}{pretending}; {copy}read \
                         at {address:#x} with the {positions} positions aligned onto it{refused}: \
                         {placed} members placed, {guessed}; {held} checks against the core held{differs}; \
                         the members and fields it lacks come from the table {base_name}{moved}: a guess"
                    ),
                    damaged,
                );
                return Some(layout);
            }
            Err(why) => refusals.push(format!("with the {positions} positions: {why}")),
        }
    }
    note(
        format!(
            "no table for {name}{pretending}, and no known version's positions read its \
             _Py_DebugOffsets at {address:#x} consistently{}",
            if refusals.is_empty() {
                String::new()
            } else {
                format!(" ({})", refusals.join("; "))
            }
        ),
        false,
    );
    None
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
