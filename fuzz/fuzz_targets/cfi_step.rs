#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pymortem::fuzzing::cfi_step(data));
