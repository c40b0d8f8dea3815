//! pymalloc's view of the objects the C extension's bugs freed
//! (`victims.json`, truth `objects.victims`): `pymortem object` on a victim
//! right after the bug says its block is free and never calls its stale GC
//! header tracked; on the holder, a live list, it says in use.

use crate::support;

use serde_json::Value;

/// Victim types no interpreter keeps a free list for: their block goes back
/// to pymalloc when freed (2.7's `str` is a `unicode` with a free list).
const POOLED: [&str; 2] = ["bytes", "instance"];

fn object(entry: &Value, address: u64) -> Value {
    let mut args = vec![
        "object".to_string(),
        "--json".to_string(),
        entry["core"].as_str().unwrap().to_string(),
        format!("{address:#x}"),
    ];
    args.extend(support::search_args(entry));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, stdout, stderr) = support::pymortem(&args);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{}: {e}: {stderr}", support::label(entry)))
}

fn now_cores() -> Vec<Value> {
    support::victim_manifest()
        .into_iter()
        .filter(|e| e["scenario"].as_str().unwrap().ends_with("_now"))
        // Bug `owners` keys its victims by owner, not by type.
        .filter(|e| !e["scenario"].as_str().unwrap().starts_with("spool_owners"))
        .collect()
}

#[test]
fn a_victim_freed_right_after_the_bug_is_a_free_block_with_a_stale_gc_header() {
    let cores = now_cores();
    assert!(!cores.is_empty(), "victims.json lists no `now` core");
    let problems = support::parallel(&cores, |entry| {
        let truth = support::truth(entry);
        let mut problems = Vec::new();
        for kind in POOLED {
            let victim = &truth["objects"]["victims"][kind];
            let address = victim["address"].as_u64().unwrap();
            let report = object(entry, address);
            let allocator = &report["allocator"];
            let label = format!("{} {kind} {address:#x}", support::label(entry));
            if allocator["allocator"] != "pymalloc" || allocator["state"] != "free" {
                problems.push(format!("{label}: not a free pymalloc block: {allocator}"));
            }
            if report["gc_state"] == "tracked" {
                problems.push(format!("{label}: a freed block called GC-tracked"));
            }
            // The instance has a GC header; bytes has none.
            if report["gc_header_stale"] != (kind == "instance") {
                problems.push(format!(
                    "{label}: gc_header_stale is {}",
                    report["gc_header_stale"]
                ));
            }
        }
        // The holder list of a decref or borrowed victim is alive.
        if let Some(list) = truth["objects"]["victims"]["bytes"]["holder"]["list"].as_u64() {
            let report = object(entry, list);
            if report["allocator"]["state"] != "in_use" {
                problems.push(format!(
                    "{}: holder list {list:#x} is not in use: {}",
                    support::label(entry),
                    report["allocator"]
                ));
            }
        }
        problems
    });
    support::assert_no_problems(&problems);
}

#[test]
fn a_static_pointing_at_a_free_block_is_named_with_its_module_and_block() {
    let cores: Vec<Value> = now_cores()
        .into_iter()
        .filter(|e| e["scenario"] == "spool_static_now")
        .collect();
    assert!(
        !cores.is_empty(),
        "victims.json lists no spool_static_now core"
    );
    let problems = support::parallel(&cores, |entry| {
        let mut args = vec!["check".to_string(), "--json".to_string()];
        args.extend(support::file_args(entry));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, stdout, _) = support::pymortem(&args);
        let report: Value = serde_json::from_str(&stdout).unwrap();
        let truth = support::truth(entry);
        let mut problems = Vec::new();
        for kind in POOLED {
            let victim = &truth["objects"]["victims"][kind];
            let address = victim["address"].as_u64().unwrap();
            let holder = &victim["holder"];
            let found = report["findings"].as_array().unwrap().iter().find(|f| {
                f["kind"] == "static_points_to_freed"
                    && f["address"].as_u64() == Some(address)
                    && f["evidence"]["static_address"] == holder["address"]
            });
            let label = format!("{} {kind} {address:#x}", support::label(entry));
            let Some(f) = found else {
                problems.push(format!(
                    "{label}: no static_points_to_freed finding from its static"
                ));
                continue;
            };
            let message = f["message"].as_str().unwrap();
            let module = holder["module"].as_str().unwrap();
            let symbol = holder["static"].as_str().unwrap();
            if !message.contains(&format!("`{symbol}")) || !message.contains(module) {
                problems.push(format!(
                    "{label}: {message} does not name {symbol} in {module}"
                ));
            }
            let allocator = &f["evidence"]["allocator"];
            if allocator["allocator"] != "pymalloc" || allocator["state"] != "free" {
                problems.push(format!("{label}: allocator evidence {allocator}"));
            }
        }
        problems
    });
    support::assert_no_problems(&problems);
}
