//! Files found nowhere on the host, asked of debuginfod servers: all the
//! modules of a core at once, in parallel, then each module that got a file
//! located again so the file is verified and used like a local one.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{
    DebugStatus, FileStatus, Files, LazyIndex, ModuleKind, ModuleSet, SearchPaths, locate_module,
    mapping_state,
};
use crate::debuginfod::{ArtifactKind, Debuginfod, Request};
use crate::diagnostic::{Diagnostic, DiagnosticSource};
use crate::memory::ProcessMemory;

/// Ask `client` for every module file and debug file `set` lacks.
pub(super) fn fetch_missing(
    client: &Debuginfod,
    memory: &mut ProcessMemory,
    paths: &SearchPaths,
    index: &LazyIndex,
    set: &mut ModuleSet,
) {
    for ignored in &client.config().ignored_urls {
        set.diagnostics.push(Diagnostic::note(
            DiagnosticSource::Modules,
            format!("DEBUGINFOD_URLS: {ignored}"),
        ));
    }
    let mut requests = Vec::new();
    let mut owners = Vec::new();
    for (i, module) in set.modules.iter().enumerate() {
        let Some(id) = module
            .build_id
            .clone()
            .filter(|_| module.kind != ModuleKind::Vdso)
        else {
            continue;
        };
        let file_missing = module.file.is_none()
            && matches!(
                module.file_status,
                FileStatus::Missing { .. } | FileStatus::Mismatch { .. }
            );
        let debug_missing = matches!(module.debug_status, DebugStatus::Missing { .. });
        for (wanted, kind) in [
            (file_missing, ArtifactKind::Executable),
            (debug_missing, ArtifactKind::Debuginfo),
        ] {
            if wanted {
                requests.push(Request {
                    build_id: id.clone(),
                    kind,
                    label: module.name().to_string(),
                });
                owners.push(i);
            }
        }
    }
    if requests.is_empty() {
        return;
    }
    let outcomes = client.fetch_all(&requests);
    let mut relocate = BTreeSet::new();
    let mut unanswered: Vec<(usize, String)> = Vec::new();
    for ((request, outcome), &owner) in requests.iter().zip(outcomes).zip(&owners) {
        match outcome {
            Ok(_) => {
                relocate.insert(owner);
            }
            Err(error) => {
                if !error.is_not_found() {
                    set.diagnostics.push(Diagnostic::warning(
                        DiagnosticSource::Modules,
                        format!("debuginfod: {}: {error}", request.label),
                    ));
                }
                if request.kind == ArtifactKind::Debuginfo {
                    unanswered.push((owner, error.to_string()));
                }
            }
        }
    }
    // A debug file still missing says what the servers answered.
    for (owner, answer) in unanswered {
        if let Some(module) = Arc::get_mut(&mut set.modules[owner])
            && let DebugStatus::Missing { reason } = &mut module.debug_status
        {
            reason.push_str(&format!("; debuginfod: {answer}"));
        }
    }
    for i in relocate {
        let old = &set.modules[i];
        let recorded = if old.deleted {
            format!("{} (deleted)", old.recorded_path)
        } else {
            old.recorded_path.clone()
        };
        let mut diagnostics = Vec::new();
        let relocated = locate_module(
            memory,
            &Files::Host(paths, index),
            &recorded,
            old.base,
            old.end,
            old.kind == ModuleKind::Executable,
            &mut diagnostics,
        );
        if let Some(module) = relocated {
            memory.set_file_state(&recorded, &mapping_state(&module));
            set.modules[i] = Arc::new(module);
        }
        for d in diagnostics {
            if !set.diagnostics.contains(&d) {
                set.diagnostics.push(d);
            }
        }
    }
}
