//! Frames for functions that made a tail call. A function that ends by
//! jumping to another leaves no frame, so an unwinder goes straight from
//! the callee to the function that called the first one. When the caller's
//! `call` names a function other than the callee, the DWARF call sites of
//! that function say which tail calls lead from it to the callee; gdb shows
//! the same frames.

use std::collections::HashMap;

use super::SourceCache;
use crate::dwarf::{CallSite, CallTarget};
use crate::memory::MemoryExt;
use crate::modules::Module;
use crate::process::Process;
use crate::unwind::{FrameAddress, NativeFrame, Trust, describe};

/// Tail calls chained between two frames, at most.
const MAX_CHAIN: usize = 8;
/// Functions whose call sites are read for one gap, at most.
const MAX_FUNCTIONS: usize = 64;
/// Chains kept for one gap, at most.
const MAX_CHAINS: usize = 16;
/// Functions whose call sites are read for one report, at most: each read
/// walks a unit's DIEs, and a damaged stack can have thousands of gaps.
const MAX_FUNCTIONS_PER_REPORT: usize = 4096;

/// One link of a chain: a function (its entry, in the image) and the
/// address after its tail-call jump.
type Link = (u64, u64);

/// Call sites per function and rebuilt frames per gap, kept for a whole
/// report: deep recursion repeats the same gap thousands of times.
#[derive(Default)]
pub(super) struct TailCallCache {
    // Reads beyond MAX_FUNCTIONS_PER_REPORT find nothing.
    sites: HashMap<(String, u64), std::sync::Arc<[CallSite]>>,
    gaps: HashMap<(u64, u64), Vec<NativeFrame>>,
}

/// Insert a frame for every function that tail-called its way from each
/// frame's caller to the frame; `frames` is innermost first.
pub(super) fn add_tail_call_frames(
    process: &Process,
    sources: &mut SourceCache,
    frames: &mut Vec<NativeFrame>,
) {
    let mut out = Vec::with_capacity(frames.len());
    for (i, frame) in frames.drain(..).enumerate() {
        if i > 0
            && let Some(callee) = out.last()
        {
            let found = gap(process, sources, callee, &frame);
            out.extend(found);
        }
        out.push(frame);
    }
    *frames = out;
}

/// The frames missing between `callee` and its caller `caller`, innermost
/// first; looked up once per (return address, callee) for a report.
fn gap(
    process: &Process,
    sources: &mut SourceCache,
    callee: &NativeFrame,
    caller: &NativeFrame,
) -> Vec<NativeFrame> {
    let FrameAddress::ReturnAddress(return_address) = caller.address else {
        return Vec::new();
    };
    let Some(offset) = callee.function_offset else {
        return Vec::new();
    };
    let callee_entry = callee.address.address().wrapping_sub(offset);
    let key = (return_address, callee_entry);
    let mut frames = match sources.tail_calls.gaps.get(&key) {
        Some(frames) => frames.clone(),
        None => {
            let frames = rebuild(process, sources, return_address, callee_entry);
            sources.tail_calls.gaps.insert(key, frames.clone());
            frames
        }
    };
    for frame in &mut frames {
        frame.sp = caller.sp;
    }
    frames
}

/// The frames of the functions that tail-called their way from the call
/// returning to `return_address` to the function at `callee_entry`.
fn rebuild(
    process: &Process,
    sources: &mut SourceCache,
    return_address: u64,
    callee_entry: u64,
) -> Vec<NativeFrame> {
    let Some(stub_or_function) = direct_call_target(process, return_address) else {
        return Vec::new();
    };
    if stub_or_function == callee_entry {
        return Vec::new();
    }
    let called = through_plt(process, stub_or_function).unwrap_or(stub_or_function);
    if called == callee_entry {
        return Vec::new();
    }
    let modules = process.modules();
    let Some(module) = modules.by_address(called) else {
        return Vec::new();
    };
    // Chains are followed within one module: a tail call into another
    // goes through its PLT, and the callee's DWARF would not know the way back.
    if !module.contains(callee_entry) {
        return Vec::new();
    }
    let Some(bias) = module.load_bias else {
        return Vec::new();
    };
    let chain = find_chain(
        sources,
        module,
        called.wrapping_sub(bias),
        callee_entry.wrapping_sub(bias),
    );
    // The chain runs from the called function to the callee: innermost last.
    chain
        .iter()
        .rev()
        .map(|&(_, pc)| {
            describe(
                Some(module),
                FrameAddress::ReturnAddress(pc.wrapping_add(bias)),
                0,
                Trust::TailCall,
            )
        })
        .collect()
}

/// The target of the direct call that returns to `return_address`.
fn direct_call_target(process: &Process, return_address: u64) -> Option<u64> {
    let arch = process.core().arch();
    let length = arch.direct_call_length();
    let call = process
        .memory()
        .read_bytes(
            return_address.checked_sub(length as u64)?,
            length as u64,
            length as u64,
        )
        .ok()?;
    arch.direct_call_target(return_address, &call)
}

/// Where a PLT stub at `stub` jumps: the function its GOT slot holds, once
/// the loader has bound it.
fn through_plt(process: &Process, stub: u64) -> Option<u64> {
    let arch = process.core().arch();
    let length = arch.plt_stub_length();
    let code = process
        .memory()
        .read_bytes(stub, length as u64, length as u64)
        .ok()?;
    let slot = arch.plt_slot(stub, &code)?;
    process.memory().read_u64(slot).ok()
}

/// The tail calls that lead from `from` to `to` (both entries in the
/// image): every chain found, reduced as gdb does to the links all chains
/// share at either end; empty when none or when DWARF has no call sites.
fn find_chain(sources: &mut SourceCache, module: &Module, from: u64, to: u64) -> Vec<Link> {
    let mut chains = Vec::new();
    let mut path = Vec::new();
    let mut budget = MAX_FUNCTIONS;
    search(
        sources,
        module,
        from,
        to,
        &mut path,
        &mut chains,
        &mut budget,
    );
    let Some(first) = chains.first() else {
        return Vec::new();
    };
    let shortest = chains.iter().map(Vec::len).min().unwrap_or(0);
    let prefix = (0..shortest)
        .take_while(|&i| chains.iter().all(|c| c[i] == first[i]))
        .count();
    let suffix = (0..shortest - prefix)
        .take_while(|&i| {
            let at = |c: &Vec<Link>| c[c.len() - 1 - i];
            chains.iter().all(|c| at(c) == at(first))
        })
        .count();
    let mut chain = first[..prefix].to_vec();
    chain.extend_from_slice(&first[first.len() - suffix..]);
    chain
}

fn search(
    sources: &mut SourceCache,
    module: &Module,
    function: u64,
    to: u64,
    path: &mut Vec<Link>,
    chains: &mut Vec<Vec<Link>>,
    budget: &mut usize,
) {
    if *budget == 0 || path.len() >= MAX_CHAIN || chains.len() >= MAX_CHAINS {
        return;
    }
    *budget -= 1;
    let sites = call_sites(sources, module, function);
    for site in sites.iter().filter(|s| s.tail_call) {
        let Some(target) = resolve(module, site.target.as_ref()) else {
            continue;
        };
        if target == function || path.iter().any(|&(f, _)| f == target) {
            continue;
        }
        path.push((function, site.pc));
        if target == to {
            chains.push(path.clone());
        } else {
            search(sources, module, target, to, path, chains, budget);
        }
        path.pop();
    }
}

/// The call sites of the function at `entry` (in the image), read once.
fn call_sites(
    sources: &mut SourceCache,
    module: &Module,
    entry: u64,
) -> std::sync::Arc<[CallSite]> {
    let key = (module.recorded_path.clone(), entry);
    if let Some(sites) = sources.tail_calls.sites.get(&key) {
        return sites.clone();
    }
    if sources.tail_calls.sites.len() >= MAX_FUNCTIONS_PER_REPORT {
        return std::sync::Arc::from([]);
    }
    let sites: std::sync::Arc<[CallSite]> = sources
        .lines(module)
        .map(|lines| lines.call_sites(entry))
        .unwrap_or_default()
        .into();
    sources.tail_calls.sites.insert(key, sites.clone());
    sites
}

/// A callee's entry in the image.
fn resolve(module: &Module, target: Option<&CallTarget>) -> Option<u64> {
    match target? {
        CallTarget::Address(address) => Some(*address),
        CallTarget::Name(name) => {
            let runtime = module.symbol_address(name, None)?;
            Some(runtime.wrapping_sub(module.load_bias?))
        }
    }
}
