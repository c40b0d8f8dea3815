//! The integration tests, one binary so that a fresh build links once.
//! Each module is one concern; `support` holds what they share.

mod architecture;
mod support;

mod api;
mod batch_temp;
mod bundle;
mod bus_error;
mod check_damage;
mod check_snapshots;
mod check_truth;
mod check_without_files;
mod cli;
mod cli_text;
mod compressed_debug_bombs;
mod datastack_recovery;
mod debug_offsets_data;
mod debuginfo;
mod escapes;
mod examples;
mod free_lists_truth;
mod free_threaded;
mod fuzz_regressions;
mod goblin_diff;
mod hostile_files;
mod incomplete;
mod info_truth;
mod json_schema;
mod layout;
mod layout_cache;
mod layout_gdb;
mod mutation;
mod native;
mod native_gdb;
mod real_hostile;
mod samples;
mod subinterp_truth;
mod symbols;
mod synthetic;
mod temp_files;
mod test_infra;
mod threads_damage;
mod threads_truth;
mod triage;
mod victims;
mod without_files;
