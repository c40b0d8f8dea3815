//! The programs in `examples/` run on sample cores, and what they print
//! agrees with what the scenarios recorded before they died.

use crate::support;

use std::collections::BTreeMap;

use serde_json::Value;

fn entries(scenario: &str, kind: &str) -> Vec<Value> {
    let found: Vec<Value> = support::manifest()
        .into_iter()
        .filter(|e| e["scenario"] == scenario && e["kind"] == kind)
        .collect();
    assert!(found.len() >= 12, "{scenario}: every interpreter");
    found
}

fn run(name: &str, args: &[String]) -> (i32, String, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    support::example(name, &args)
}

/// freed_tuples names the victim and the list holding it; exit status 1.
fn freed_tuples_finds(label: &str, args: &[String], truth: &Value) -> Vec<String> {
    let objects = &truth["objects"];
    let victim = objects["victim_tuple"].as_u64().unwrap();
    let holder = objects["holder_list"].as_u64().unwrap();
    let index = objects["holder_index"].as_u64().unwrap();
    let size = objects["victim_size"].as_u64().unwrap();
    let (code, stdout, stderr) = run("freed_tuples", args);
    let mut problems = Vec::new();
    if code != 1 {
        problems.push(format!("{label}: exit {code}, want 1: {stderr}"));
    }
    let header = format!("freed tuple {victim:#x} on the free list of {size}-tuples");
    let held = format!("  held by list {holder:#x} item {index} (");
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with(&header));
    if lines.next().is_none() {
        problems.push(format!("{label}: no line starts {header:?}:\n{stdout}"));
    } else if !lines
        .take_while(|l| l.starts_with("  held by"))
        .any(|l| l.starts_with(&held))
    {
        problems.push(format!(
            "{label}: {victim:#x} is not shown {held:?}:\n{stdout}"
        ));
    }
    problems
}

#[test]
fn freed_tuples_finds_every_double_free_victim_and_its_holder() {
    if support::matrix_missing() {
        return;
    }
    let mut jobs: Vec<(String, Vec<String>, Value)> = entries("double_free", "kernel")
        .into_iter()
        .chain(entries("double_free", "gcore"))
        .map(|e| {
            let label = format!("{} {}", e["interp"], e["kind"]);
            (label, support::file_args(&e), support::truth(&e))
        })
        .collect();
    // The committed sample too: a bundle, with no sysroot.
    let sample = pymortem::doc_support::sample("pyenv-2.7.18-double_free").unwrap();
    jobs.push((
        "committed sample".into(),
        vec![sample.core.display().to_string()],
        sample.truth,
    ));
    support::assert_no_problems(&support::parallel(&jobs, |(label, args, truth)| {
        freed_tuples_finds(label, args, truth)
    }));
}

#[test]
fn freed_tuples_finds_nothing_in_healthy_cores() {
    if support::matrix_missing() {
        return;
    }
    let jobs = entries("threads", "kernel");
    support::assert_no_problems(&support::parallel(&jobs, |e| {
        let (code, stdout, stderr) = run("freed_tuples", &support::file_args(e));
        let last = stdout.lines().last().unwrap_or("");
        if code == 0 && last.starts_with("0 freed tuples still referenced") {
            Vec::new()
        } else {
            vec![format!(
                "{}: exit {code}, last line {last:?}: {stderr}",
                e["interp"]
            )]
        }
    }));
}

#[test]
fn largest_containers_puts_the_busy_heaps_root_list_first() {
    if support::matrix_missing() {
        return;
    }
    let jobs = entries("busy_heap", "kernel");
    support::assert_no_problems(&support::parallel(&jobs, |e| {
        let truth = support::truth(e);
        let root = truth["objects"]["root_list"].as_u64().unwrap();
        let records = truth["objects"]["records"].as_u64().unwrap();
        let mut args = vec!["--top".to_string(), "3".to_string()];
        args.extend(support::file_args(e));
        let (code, stdout, stderr) = run("largest_containers", &args);
        let rows: Vec<Vec<&str>> = stdout
            .lines()
            .skip(1)
            .map(|l| l.split('\t').collect())
            .collect();
        let first = rows.first().map(|r| r[..4].to_vec());
        let want = vec!["1", &*records.to_string(), "list", &*format!("{root:#x}")]
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>();
        let first: Option<Vec<String>> = first.map(|r| r.into_iter().map(str::to_string).collect());
        if code != 0 || first.as_ref() != Some(&want) || rows.len() != 3 {
            vec![format!(
                "{}: exit {code}, first row {first:?}, want {want:?}, {} rows: {stderr}",
                e["interp"],
                rows.len()
            )]
        } else {
            Vec::new()
        }
    }));
}

/// Parse distinct_stacks's blocks: frames -> (threads, cores).
fn parse_groups(stdout: &str) -> BTreeMap<Vec<String>, (usize, usize)> {
    let mut groups = BTreeMap::new();
    for block in stdout.split("\n\n") {
        let mut lines = block.lines();
        let Some(header) = lines.next() else { continue };
        let words: Vec<&str> = header.split(' ').collect();
        let (Some(threads), Some(cores)) = (
            words.first().and_then(|w| w.parse().ok()),
            words.get(3).and_then(|w| w.parse().ok()),
        ) else {
            continue;
        };
        let frames: Vec<String> = lines.map(|l| l.trim().to_string()).collect();
        groups.insert(frames, (threads, cores));
    }
    groups
}

#[test]
fn distinct_stacks_groups_the_threads_of_a_folder() {
    if support::matrix_missing() {
        return;
    }
    // Three cores, one of them twice (hard links: two files; a symbolic
    // link to a core the walk also finds is read once).
    let dir = tempfile::tempdir_in(support::repo().join("target")).unwrap();
    let pick = |interp: &str, scenario: &str| {
        support::manifest()
            .into_iter()
            .find(|e| e["interp"] == interp && e["scenario"] == scenario && e["kind"] == "kernel")
            .unwrap()
    };
    let chosen = [
        ("a.core", pick("pyenv-3.11.7", "threads")),
        ("b.core", pick("pyenv-3.11.7", "threads")),
        ("c.core", pick("pyenv-3.12.1", "threads")),
        ("d.core", pick("pyenv-3.12.1", "double_free")),
    ];
    let mut want: BTreeMap<Vec<String>, (usize, usize)> = BTreeMap::new();
    let mut seen_in: BTreeMap<Vec<String>, Vec<&str>> = BTreeMap::new();
    for (name, entry) in &chosen {
        std::fs::hard_link(entry["core"].as_str().unwrap(), dir.path().join(name)).unwrap();
        for thread in support::truth(entry)["threads"].as_array().unwrap() {
            let frames: Vec<String> = thread["stack"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let line = f["line"]
                        .as_i64()
                        .map_or("unknown line".into(), |l| l.to_string());
                    format!(
                        "{} ({}:{line})",
                        f["function"].as_str().unwrap(),
                        f["file"].as_str().unwrap()
                    )
                })
                .collect();
            want.entry(frames.clone()).or_default().0 += 1;
            let cores = seen_in.entry(frames).or_default();
            if !cores.contains(name) {
                cores.push(name);
            }
        }
    }
    for (frames, cores) in seen_in {
        want.get_mut(&frames).unwrap().1 = cores.len();
    }
    let (code, stdout, stderr) = run("distinct_stacks", &[dir.path().display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.trim_end().ends_with(&format!(
            "{} distinct stacks, 4 cores read, 0 skipped",
            want.len()
        )),
        "{stdout}"
    );
    let got = parse_groups(&stdout);
    let mut problems = Vec::new();
    for (frames, counts) in &want {
        match got.get(frames) {
            Some(c) if c == counts => {}
            other => problems.push(format!(
                "{frames:?}: (threads, cores) {other:?}, want {counts:?}"
            )),
        }
    }
    support::assert_no_problems(&problems);
}
