//! The library's public API, used as a forensics script would use it, on
//! every generated double-free core: only `pymortem::` items, facts from the
//! truth files.

use crate::support;

use pymortem::forensics::FindingKind;
use pymortem::{ObjectKind, Python};
use serde_json::Value;

fn cores(scenario: &str) -> Vec<Value> {
    let cores: Vec<Value> = support::manifest()
        .into_iter()
        .filter(|e| e["scenario"] == scenario)
        .collect();
    assert!(cores.len() >= 24, "every interpreter, kernel and gcore");
    cores
}

/// From the core to the victim tuple and the list still holding it, two
/// ways: the checks' findings, and typed reads from the holder.
fn victim_and_holder(entry: &Value) -> Vec<String> {
    let label = format!("{} {}", entry["interp"], entry["kind"]);
    let truth = support::truth(entry);
    let victim = truth["objects"]["victim_tuple"].as_u64().unwrap();
    let holder = truth["objects"]["holder_list"].as_u64().unwrap();
    let mut problems = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            problems.push(format!("{label}: {what}"));
        }
    };
    let process = support::open(entry);
    let python = Python::of(&process).unwrap();

    // 1. The free list holds the victim.
    let free = python.free_lists();
    let slot = free.slots.iter().find(|s| s.members.contains(&victim));
    expect(
        slot.is_some_and(|s| s.size == truth["objects"]["victim_size"].as_u64()),
        format!("no free-list slot of size 7 holds {victim:#x}"),
    );

    // 2. The checks flag it as still referenced, by the holder list's item 0.
    let result = python.check();
    let referenced = result
        .findings
        .iter()
        .find(|f| f.address == victim && f.kind == FindingKind::FreeListMemberReferenced);
    expect(
        referenced.is_some_and(|f| f.referrers.iter().any(|r| r.container == Some(holder))),
        format!("no free_list_member_referenced finding for {victim:#x} naming {holder:#x}"),
    );
    expect(
        result.verdict.victims.contains(&victim),
        format!(
            "the verdict's victims {:x?} lack {victim:#x}",
            result.verdict.victims
        ),
    );

    // 3. Typed reads: the holder is a list whose item 0 is the victim tuple.
    let holder_object = python.object(holder);
    expect(
        holder_object.kind().ok() == Some(ObjectKind::List),
        format!("{holder:#x} is not read as a list"),
    );
    let items = holder_object.list_items().unwrap_or_default();
    let index = truth["objects"]["holder_index"].as_u64().unwrap() as usize;
    expect(
        items.get(index).map(|o| o.address()) == Some(victim),
        format!("list item {index} is not the victim"),
    );
    let victim_object = python.object(victim);
    expect(
        victim_object.type_name().ok().as_deref() == Some("tuple")
            && victim_object.var_size().ok() == Some(7),
        "the victim does not read as a 7-tuple".into(),
    );
    // A tuple on a free list is untracked (the GC is still pointed at nothing).
    expect(
        victim_object.gc_state().ok() == Some(Some(pymortem::forensics::GcState::Untracked)),
        format!("victim GC state {:?}", victim_object.gc_state()),
    );

    // 4. The holder list is tracked and in a GC generation.
    let gc = python.gc_generations();
    expect(
        gc.generations.iter().any(|g| g.objects.contains(&holder)),
        format!("{holder:#x} is in no GC generation"),
    );

    // 5. Attributes: the owner instances name the holder list.
    for key in ["owner", "owner_with_dict"] {
        let owner = python.object(truth["objects"][key].as_u64().unwrap());
        let want = truth["objects"][format!("{key}_attributes")]
            .as_object()
            .unwrap();
        let attributes = match owner.attributes() {
            Ok(a) => a,
            Err(e) => {
                expect(false, format!("{key}: attributes: {e}"));
                continue;
            }
        };
        let names: Vec<&str> = attributes.iter().map(|a| a.name.as_str()).collect();
        expect(
            names.len() == want.len() && want.keys().all(|k| names.contains(&k.as_str())),
            format!("{key}: attribute names {names:?}, want {:?}", want.keys()),
        );
        for attribute in &attributes {
            let Some(value) = want.get(&attribute.name) else {
                continue;
            };
            let ok = match (attribute.name.as_str(), value) {
                ("items", v) => Some(attribute.value.address()) == v.as_u64(),
                (_, Value::String(s)) => attribute.value.str_value().ok().as_deref() == Some(s),
                (_, v) => attribute.value.int_value().ok() == v.as_i64().map(i128::from),
            };
            expect(
                ok,
                format!(
                    "{key}.{} reads {}, want {value}",
                    attribute.name,
                    attribute.value.repr()
                ),
            );
        }
        expect(
            owner
                .attribute("items")
                .ok()
                .flatten()
                .is_some_and(|o| o.address() == holder),
            format!("{key}.items is not the holder list"),
        );
    }
    problems
}

#[test]
fn public_api_walks_from_the_core_to_the_victim_and_its_holder() {
    if support::matrix_missing() {
        return;
    }
    let cores = cores("double_free");
    support::assert_no_problems(&support::parallel(&cores, victim_and_holder));
}

#[test]
fn typed_reads_refuse_the_wrong_type_and_name_the_address() {
    if support::matrix_missing() {
        return;
    }
    let entry = cores("double_free")
        .into_iter()
        .find(|e| e["interp"] == "pyenv-3.12.1")
        .unwrap();
    let truth = support::truth(&entry);
    let holder = truth["objects"]["holder_list"].as_u64().unwrap();
    let process = support::open(&entry);
    let python = Python::of(&process).unwrap();
    let err = python.object(holder).tuple_items().unwrap_err();
    assert!(
        matches!(err, pymortem::Error::WrongType { address, expected: "tuple", ref found } if address == holder && found == "list"),
        "{err}"
    );
    // An unmapped address fails with the address in the error.
    let err = python.object(8).type_name().unwrap_err();
    assert!(err.to_string().contains("0x"), "{err}");
}

#[test]
fn threads_carry_python_and_native_frames() {
    if support::matrix_missing() {
        return;
    }
    let entry = cores("threads")
        .into_iter()
        .find(|e| e["interp"] == "pyenv-3.11.7" && e["kind"] == "kernel")
        .unwrap();
    let truth = support::truth(&entry);
    let process = support::open(&entry);
    let python = Python::of(&process).unwrap();
    // Handles move across threads.
    let stacks = std::thread::spawn(move || python.stacks()).join().unwrap();
    for thread in truth["threads"].as_array().unwrap() {
        let lwp = thread["native_id"].as_i64().unwrap() as i32;
        let stack = stacks.iter().find(|s| s.lwp == lwp).unwrap();
        let python_functions: Vec<&str> = stack
            .stack
            .frames
            .iter()
            .filter_map(|f| match f {
                pymortem::stacks::StackFrame::Python(p) => Some(p.function.as_str()),
                _ => None,
            })
            .collect();
        let want: Vec<&str> = thread["stack"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["function"].as_str().unwrap())
            .collect();
        assert_eq!(python_functions, want, "LWP {lwp}");
        assert!(
            stack
                .stack
                .frames
                .iter()
                .any(|f| matches!(f, pymortem::stacks::StackFrame::Native(_))),
            "LWP {lwp} has native frames"
        );
    }
}
