//! `pymortem check` on the cores of a C extension's reference-counting bugs
//! (`sample-cores/scenarios/spool.py` with `spoolext.c`, listed in
//! `victims.json`): eight victims of every type per core, each freed once
//! while its holder still points at it. The truth names each victim and its
//! holder before the bug fires.

use crate::support;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use support::schema_validator as validator;

/// One core's report, checked against the schema.
struct Checked {
    entry: Value,
    truth: Value,
    report: Value,
}

/// `check --json` on every core of `victims.json`, once per test binary.
fn checked() -> &'static [Checked] {
    static CHECKED: OnceLock<Vec<Checked>> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let entries = support::victim_manifest();
        assert!(!entries.is_empty(), "victims.json lists no core");
        entries
            .into_iter()
            .map(|entry| {
                assert!(
                    entry["ok"] == true,
                    "{}: {}",
                    support::label(&entry),
                    entry["problems"]
                );
                let mut args = vec!["check".to_string(), "--json".to_string()];
                args.extend(support::file_args(&entry));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let (code, stdout, stderr) = support::pymortem(&args);
                let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
                    panic!("{}: exit {code}: {e}: {stderr}", support::label(&entry))
                });
                let errors: Vec<String> = validator()
                    .iter_errors(&report)
                    .take(3)
                    .map(|e| format!("at '{}': {e}", e.instance_path().as_str()))
                    .collect();
                assert!(
                    errors.is_empty(),
                    "{}: schema: {errors:?}",
                    support::label(&entry)
                );
                let truth = support::truth(&entry);
                Checked {
                    entry,
                    truth,
                    report,
                }
            })
            .collect()
    })
}

fn bug_and_phase(c: &Checked) -> (String, String) {
    let o = &c.truth["objects"];
    (
        o["bug"].as_str().unwrap().to_string(),
        o["phase"].as_str().unwrap().to_string(),
    )
}

/// The error and warning findings about `address`.
fn loud_findings(report: &Value, address: u64) -> Vec<&Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error" || f["severity"] == "warning")
        .filter(|f| f["address"].as_u64() == Some(address))
        .collect()
}

/// Whether one of `findings` has a referrer that `wanted` accepts.
fn names_referrer(findings: &[&Value], wanted: impl Fn(&Value) -> bool) -> bool {
    findings.iter().any(|f| {
        f["referrers"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(&wanted))
    })
}

/// Whether an error or warning finding is about `address`, and whether
/// one of those names the truth's holder among its referrers: its list as
/// the referrer's container, or its static as the referrer's address.
fn named(report: &Value, address: u64, holder: &Value) -> (bool, bool) {
    let loud = loud_findings(report, address);
    let holder_named = match (holder["list"].as_u64(), holder["static"].is_string()) {
        (Some(list), _) => names_referrer(&loud, |r| r["container"].as_u64() == Some(list)),
        (None, true) => {
            let slot = holder["address"].as_u64();
            names_referrer(&loud, |r| r["at"].as_u64() == slot)
        }
        (None, false) => false,
    };
    (!loud.is_empty(), holder_named)
}

/// Fails with "N of `total` `what`:" and the list, unless `misses` is empty.
fn assert_no_misses(misses: &[String], total: usize, what: &str) {
    assert!(
        misses.is_empty(),
        "{} of {total} {what}:\n{}",
        misses.len(),
        misses.join("\n")
    );
}

/// Per phase: victims named / victims, holders named / victims, and the misses.
fn tally(
    filter: impl Fn(&str, &str, &str) -> bool,
) -> BTreeMap<String, (usize, usize, usize, Vec<String>)> {
    let mut by_phase: BTreeMap<String, (usize, usize, usize, Vec<String>)> = BTreeMap::new();
    for c in checked() {
        let (bug, phase) = bug_and_phase(c);
        let victims = c.truth["objects"]["victims"].as_object().unwrap();
        for (kind, victim) in victims {
            if !filter(&bug, &phase, kind) {
                continue;
            }
            let address = victim["address"].as_u64().unwrap();
            let (found, holder_found) = named(&c.report, address, &victim["holder"]);
            let row = by_phase.entry(phase.clone()).or_default();
            row.1 += 1;
            if found {
                row.0 += 1;
            }
            if holder_found {
                row.2 += 1;
            } else {
                row.3.push(format!(
                    "{} {kind} {address:#x}{}",
                    support::label(&c.entry),
                    if found { " (holder not named)" } else { "" }
                ));
            }
        }
    }
    by_phase
}

/// An extra `Py_DECREF` on an argument and a borrowed reference returned
/// as a new one leave each victim in a list that still points at it; a
/// static kept without a reference leaves the extension's global pointing
/// at it. Right after the bug (≥ 95%) and after 50 more requests (≥ 90%),
/// the victim is the address of an error or warning finding that names
/// that list or that static.
#[test]
fn victims_of_list_and_static_holders_are_named_with_their_holder() {
    if support::matrix_missing() {
        return;
    }
    let by_phase = tally(|bug, phase, _| bug != "owners" && phase != "crash");
    for (phase, minimum) in [("now", 95), ("later", 90)] {
        let (found, total, holders, misses) = by_phase
            .get(phase)
            .unwrap_or_else(|| panic!("no {phase} core in victims.json"));
        assert!(*total > 0);
        assert!(
            holders * 100 >= total * minimum,
            "{phase}: victims named {found}/{total}, with their holder {holders}/{total} \
             (want ≥ {minimum}%); missed:\n{}",
            misses.join("\n")
        );
    }
}

/// Every tuple victim held by a list is found in every phase, as the tuple
/// free-list checks always did.
#[test]
fn tuple_victims_are_named_in_every_phase() {
    if support::matrix_missing() {
        return;
    }
    for (phase, (found, total, _, misses)) in
        tally(|bug, _, kind| bug != "static" && kind == "tuple")
    {
        assert_eq!(
            found,
            total,
            "{phase}: tuple victims named {found}/{total}; missed:\n{}",
            misses.join("\n")
        );
    }
}

/// A process that died of its bug (the crash phase, when it did not reach
/// its bound) never gets a clean verdict.
#[test]
fn crash_cores_of_the_bug_are_not_clean() {
    if support::matrix_missing() {
        return;
    }
    let mut crashes = 0;
    let mut clean = Vec::new();
    for c in checked() {
        if bug_and_phase(c).1 != "crash" || c.entry["died_of_bug"] != true {
            continue;
        }
        crashes += 1;
        if c.report["verdict"]["status"] == "clean" {
            clean.push(support::label(&c.entry));
        }
    }
    assert!(crashes > 0, "no crash core died of its bug");
    assert_no_misses(&clean, crashes, "crash cores called clean");
}

/// The verdict names a victim first: one of the truth's, never an
/// unrelated object, on every core where a victim was named at all.
#[test]
fn verdict_victims_are_the_truths() {
    if support::matrix_missing() {
        return;
    }
    let mut wrong = Vec::new();
    for c in checked() {
        let (bug, phase) = bug_and_phase(c);
        if bug == "static" || phase == "crash" {
            continue;
        }
        let truth: Vec<u64> = c.truth["objects"]["victims"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v["address"].as_u64().unwrap())
            .collect();
        let first = c.report["verdict"]["victims"][0].as_u64();
        if !first.is_some_and(|v| truth.contains(&v)) {
            wrong.push(format!(
                "{}: verdict victim {first:?}, truth {truth:x?}",
                support::label(&c.entry)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A static kept without a reference: right after the bug, the extension's
/// global is named by a finding on the victim (`static_points_to_freed`, its
/// referrer at the slot's address the truth recorded) for at least 85% of
/// the victims (floats wait for the float free list: its link is `ob_type`).
#[test]
fn victims_of_a_kept_static_are_named_with_the_static() {
    if support::matrix_missing() {
        return;
    }
    let (mut total, mut found, mut misses) = (0, 0, Vec::new());
    for c in checked() {
        if bug_and_phase(c) != ("static".to_string(), "now".to_string()) {
            continue;
        }
        for (kind, victim) in c.truth["objects"]["victims"].as_object().unwrap() {
            total += 1;
            let address = victim["address"].as_u64().unwrap();
            let slot = victim["holder"]["address"].as_u64().unwrap();
            let named = c.report["findings"].as_array().unwrap().iter().any(|f| {
                f["kind"] == "static_points_to_freed"
                    && f["address"].as_u64() == Some(address)
                    && f["evidence"]["static_address"].as_u64() == Some(slot)
            });
            if named {
                found += 1;
            } else {
                misses.push(format!("{} {kind} {address:#x}", support::label(&c.entry)));
            }
        }
    }
    assert!(total > 0, "no static-bug core in victims.json");
    assert!(
        found * 100 >= total * 85,
        "static victims named {found}/{total}; missed:\n{}",
        misses.join("\n")
    );
}

/// Victims held by other owners than a list (bug `owners`: a deque item, a
/// set entry, a function's default, a closure cell, a bound method's self,
/// a suspended generator's local, an instance's attribute), right after the
/// bug and 50 requests later: every one is the address of an error or
/// warning finding with a referrer of the kind the truth names whose
/// container is the truth's owner. On every interpreter but for 2.7's deque:
/// its `_collections` is a module of its own, outside the layout tables.
#[test]
fn victims_of_other_owners_are_named_with_their_owner() {
    if support::matrix_missing() {
        return;
    }
    let (mut total, mut misses) = (0, Vec::new());
    for c in checked() {
        if bug_and_phase(c).0 != "owners" {
            continue;
        }
        let py2 = c.entry["python_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2."));
        for (owner, victim) in c.truth["objects"]["victims"].as_object().unwrap() {
            if py2 && owner == "deque_item" {
                continue;
            }
            total += 1;
            let address = victim["address"].as_u64().unwrap();
            let holder = victim["holder"]["object"].as_u64().unwrap();
            let loud = loud_findings(&c.report, address);
            if !names_referrer(&loud, |r| {
                r["container"].as_u64() == Some(holder) && r["kind"] == owner.as_str()
            }) {
                misses.push(format!(
                    "{} {owner} {} {address:#x}",
                    support::label(&c.entry),
                    victim["type"]
                ));
            }
        }
    }
    assert!(total > 0, "no spool_owners core in victims.json");
    assert_no_misses(&misses, total, "victims not named with their owner");
}

/// The crash site: on a crash core that died of its bug, an error
/// `crash_site_object` finding names a truth victim (the object the dying
/// function was given, or the freed item of the container it was given),
/// never an unrelated object, and the verdict starts with it. Where the
/// holder list was read back (`decref`, `borrowed`: the crash comes from
/// `repr(holder[0])` or the dealloc that follows), every core has one.
#[test]
fn crash_site_object_is_a_truth_victim() {
    if support::matrix_missing() {
        return;
    }
    let (mut held, mut named, mut wrong) = (0, 0, Vec::new());
    for c in checked() {
        let (bug, phase) = bug_and_phase(c);
        if phase != "crash" || c.entry["died_of_bug"] != true {
            continue;
        }
        let truth: Vec<u64> = c.truth["objects"]["victims"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v["address"].as_u64().unwrap())
            .collect();
        let site = c.report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == "crash_site_object" && f["severity"] == "error");
        if bug != "static" {
            held += 1;
        }
        let Some(site) = site else {
            if bug != "static" {
                wrong.push(format!("{}: no crash-site error", support::label(&c.entry)));
            }
            continue;
        };
        let address = site["address"].as_u64().unwrap();
        let first = c.report["verdict"]["victims"][0].as_u64();
        if !truth.contains(&address) || first != Some(address) {
            wrong.push(format!(
                "{}: crash site {address:#x}, verdict victim {first:x?}, truth {truth:x?}",
                support::label(&c.entry)
            ));
        } else if bug != "static" {
            named += 1;
        }
    }
    assert!(held > 0, "no decref or borrowed crash core died of its bug");
    assert!(
        wrong.is_empty(),
        "{named} of {held} named:\n{}",
        wrong.join("\n")
    );
}
