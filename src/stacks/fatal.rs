//! The fatal error a thread died in: the message CPython passed to
//! `Py_FatalError` and its relatives, recovered from the call-site values
//! DWARF records at the call (as gdb's `msg@entry`), or else the path of
//! functions that led to the abort.

use serde::Serialize;

use crate::dwarf::{CallValue, DwarfError, call_site_values_at};
use crate::layout::VersionRules;
use crate::memory::MemoryExt;
use crate::memory::ReadError;
use crate::process::Process;
use crate::unwind::{FrameAddress, NativeStack};

/// Longest message read.
const MAX_MESSAGE: usize = 1024;

/// A fatal error a thread was dying of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FatalError {
    /// The fatal-error function the rest of CPython called (`Py_FatalError`, …).
    pub function: String,
    /// Its caller, outer to inner through the fatal-error functions: `PyTuple_New → Py_FatalError`.
    pub path: String,
    /// The message, when it could be read.
    pub message: Option<String>,
    /// Where the message came from, or why it could not be read.
    pub message_source: String,
}

/// Why the values passed at a call could not be looked up.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CallSiteError {
    #[error("the caller was interrupted, not calling")]
    Interrupted,
    #[error("{0:#x} is in no module")]
    NoModule(u64),
    #[error("the caller's module has no load bias")]
    NoLoadBias,
    #[error("{0} has no DWARF (install its debug file)")]
    NoDwarf(String),
    #[error(transparent)]
    Dwarf(#[from] DwarfError),
}

/// Why the message a fatal-error function was passed could not be read.
#[derive(Debug, thiserror::Error)]
enum MessageError {
    #[error(transparent)]
    CallSite(#[from] CallSiteError),
    #[error("no such argument register")]
    NoSuchArgument,
    #[error("DWARF records no value for the message argument at this call")]
    NoCallSiteValue,
    #[error("the message at {address:#x} is unreadable: {source}")]
    Unreadable {
        address: u64,
        #[source]
        source: ReadError,
    },
}

/// The fatal-error functions, with the argument that holds the message
/// (`fatal_error`'s depends on the version: `rules`, when it is known).
fn message_argument(function: &str, rules: Option<&VersionRules>) -> Option<usize> {
    let base = super::base_name(function);
    match base {
        "Py_FatalError" => Some(0),
        "_Py_FatalErrorFunc" | "_Py_FatalErrorFormat" => Some(1),
        "_PyObject_AssertFailed" => Some(2),
        "fatal_error" => Some(rules.map_or(1, |r| r.fatal_error_message_argument)),
        _ => None,
    }
}

/// The fatal error `stack` shows, if it passes through a fatal-error function.
pub fn fatal_error(process: &Process, stack: &NativeStack) -> Option<FatalError> {
    let rules = process.python().map(|p| p.version.rules());
    let is_fatal = |i: usize| {
        stack.frames[i]
            .function
            .as_deref()
            .and_then(|f| message_argument(f, rules.as_ref()))
    };
    let innermost = (0..stack.frames.len()).find(|&i| is_fatal(i).is_some())?;
    // The outermost of a run of fatal-error functions is the one CPython's
    // other code called; its caller passed the message.
    let mut outer = innermost;
    while outer + 1 < stack.frames.len() && is_fatal(outer + 1).is_some() {
        outer += 1;
    }
    let name = |i: usize| stack.frames.get(i).and_then(|f| f.function.clone());
    let function = name(outer)?;
    let caller = stack.frames.get(outer + 1);
    let mut path: Vec<String> = (innermost..=outer).rev().filter_map(name).collect();
    if let Some(c) = caller {
        path.insert(
            0,
            c.function
                .clone()
                .unwrap_or_else(|| format!("{:#x}", c.address.address())),
        );
    }
    let (message, message_source) = match caller {
        Some(c) => match read_message(process, c.address, is_fatal(outer).unwrap_or(0)) {
            Ok(m) => (Some(m), "DWARF call-site value at the call".to_string()),
            Err(why) => (None, why.to_string()),
        },
        None => (
            None,
            "the caller of the fatal-error function was not unwound".into(),
        ),
    };
    Some(FatalError {
        function,
        path: path.join(" → "),
        message,
        message_source,
    })
}

/// The argument values DWARF records for one call, by DWARF register number.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallArguments {
    values: Vec<(u16, CallValue)>,
    /// The caller's module's load bias, to relocate `CallValue::Address`.
    bias: u64,
}

impl CallArguments {
    /// The value passed in `register`, when DWARF records one that can be
    /// known now: a constant, an address in the image, or a caller's
    /// register that `caller` (its registers at the call, as unwound) knows.
    pub(crate) fn value(
        &self,
        register: u16,
        caller: Option<&crate::arch::UnwindRegisters>,
    ) -> Option<u64> {
        let (_, value) = self.values.iter().find(|(r, _)| *r == register)?;
        match *value {
            CallValue::Address(a) => Some(a.wrapping_add(self.bias)),
            CallValue::Constant(c) => Some(c),
            CallValue::CallerRegister { register, offset } => {
                caller?.get(register).map(|v| v.wrapping_add_signed(offset))
            }
        }
    }
}

/// The argument values the call returning to `return_address` passed, as
/// the caller's DWARF records them (`DW_TAG_call_site_parameter`).
pub(crate) fn call_arguments(
    process: &Process,
    return_address: FrameAddress,
) -> Result<CallArguments, CallSiteError> {
    call_arguments_at(process, &[return_address])
        .pop()
        .unwrap_or(Err(CallSiteError::Interrupted))
}

/// [`call_arguments`] for several calls, in order: each module's DWARF is
/// read once for all the calls in it.
pub(crate) fn call_arguments_at(
    process: &Process,
    return_addresses: &[FrameAddress],
) -> Vec<Result<CallArguments, CallSiteError>> {
    let located: Vec<_> = return_addresses
        .iter()
        .map(|&address| caller_image(process, address))
        .collect();
    let mut out: Vec<Result<CallArguments, CallSiteError>> = located
        .iter()
        .map(|l| {
            l.as_ref()
                .map(|_| CallArguments::default())
                .map_err(Clone::clone)
        })
        .collect();
    let mut done = vec![false; located.len()];
    for first in 0..located.len() {
        let Ok((image, bias, _)) = &located[first] else {
            continue;
        };
        if done[first] {
            continue;
        }
        // Every call in the same image, looked up together.
        let group: Vec<usize> = (first..located.len())
            .filter(|&i| matches!(&located[i], Ok((other, _, _)) if std::ptr::eq(*other, *image)))
            .collect();
        let pcs: Vec<u64> = group
            .iter()
            .filter_map(|&i| located[i].as_ref().ok().map(|l| l.2.wrapping_sub(*bias)))
            .collect();
        let values = call_site_values_at(image, &pcs);
        for (n, &i) in group.iter().enumerate() {
            done[i] = true;
            out[i] = match &values {
                Ok(values) => Ok(CallArguments {
                    values: values.get(n).cloned().unwrap_or_default(),
                    bias: *bias,
                }),
                Err(e) => Err(CallSiteError::Dwarf(e.clone())),
            };
        }
    }
    out
}

/// The image with DWARF of the module holding a call's return address,
/// its load bias and the return address.
fn caller_image(
    process: &Process,
    return_address: FrameAddress,
) -> Result<(&crate::elf::ElfImage, u64, u64), CallSiteError> {
    let FrameAddress::ReturnAddress(ra) = return_address else {
        return Err(CallSiteError::Interrupted);
    };
    let module = process
        .modules()
        .by_address(ra)
        .ok_or(CallSiteError::NoModule(ra))?;
    let bias = module.load_bias.ok_or(CallSiteError::NoLoadBias)?;
    let image = [module.debug_file(), module.file()]
        .into_iter()
        .flatten()
        .find(|i| i.has_dwarf())
        .ok_or_else(|| CallSiteError::NoDwarf(module.name().to_string()))?;
    Ok((image, bias, ra))
}

/// The string the call returning to `return_address` passed in argument `argument`.
fn read_message(
    process: &Process,
    return_address: FrameAddress,
    argument: usize,
) -> Result<String, MessageError> {
    let arguments = call_arguments(process, return_address)?;
    let register = process
        .core()
        .arch()
        .argument_registers()
        .get(argument)
        .ok_or(MessageError::NoSuchArgument)?;
    // A message is a literal: its value never depends on the caller's registers.
    let address = arguments
        .value(*register, None)
        .ok_or(MessageError::NoCallSiteValue)?;
    let bytes = process
        .memory()
        .read_cstr(address, MAX_MESSAGE)
        .map_err(|source| MessageError::Unreadable { address, source })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::{CallArguments, CallValue};
    use crate::arch::{ArchId, UnwindRegisters};

    #[test]
    fn call_site_values_resolve_with_the_bias_and_the_callers_registers() {
        let arguments = CallArguments {
            values: vec![
                (5, CallValue::Address(0x1000)),
                (4, CallValue::Constant(7)),
                (
                    1,
                    CallValue::CallerRegister {
                        register: 3,
                        offset: -16,
                    },
                ),
            ],
            bias: 0x7000_0000,
        };
        assert_eq!(arguments.value(5, None), Some(0x7000_1000));
        assert_eq!(arguments.value(4, None), Some(7));
        // A register value needs the caller's register, when the unwind knows it.
        assert_eq!(arguments.value(1, None), None);
        let mut caller = UnwindRegisters::new(ArchId::X86_64);
        assert_eq!(arguments.value(1, Some(&caller)), None);
        caller.set(3, Some(0x5000));
        assert_eq!(arguments.value(1, Some(&caller)), Some(0x4ff0));
        // No record for that register.
        assert_eq!(arguments.value(2, Some(&caller)), None);
    }
}
