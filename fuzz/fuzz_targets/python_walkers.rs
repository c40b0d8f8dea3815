#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pymortem::fuzzing::python_walkers(data));
