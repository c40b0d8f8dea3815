//! Differential test: our segments and notes agree with goblin's independent
//! parse of the same cores.

use crate::support;

use std::collections::BTreeSet;

use goblin::elf::Elf;
use goblin::elf::program_header::PT_LOAD;
use pymortem::corefile::{CoreFile, OpenOptions};

/// (vaddr, memsz, file offset, filesz, flags) of every PT_LOAD, from goblin.
type SegmentKey = (u64, u64, u64, u64, (bool, bool, bool));

fn compare(path: &std::path::Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: test-only read-only map of a file nobody writes meanwhile.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let elf = Elf::parse(&bytes)
        .unwrap_or_else(|e| panic!("goblin cannot parse {}: {e}", path.display()));
    let ours = CoreFile::open(path, &OpenOptions::default()).unwrap();
    let mut problems = Vec::new();

    let theirs: BTreeSet<SegmentKey> = elf
        .program_headers
        .iter()
        .filter(|ph| ph.p_type == PT_LOAD)
        .map(|ph| {
            (
                ph.p_vaddr,
                ph.p_memsz,
                ph.p_offset,
                ph.p_filesz,
                (ph.is_read(), ph.is_write(), ph.is_executable()),
            )
        })
        .collect();
    let mine: BTreeSet<SegmentKey> = ours
        .segments()
        .iter()
        .map(|s| {
            (
                s.vaddr,
                s.memsz,
                s.file_offset,
                s.filesz,
                (s.perms.read, s.perms.write, s.perms.execute),
            )
        })
        .collect();
    if theirs != mine {
        problems.push(format!(
            "{}: segments differ: only goblin {:?}, only pymortem {:?}",
            path.display(),
            theirs.difference(&mine).take(3).collect::<Vec<_>>(),
            mine.difference(&theirs).take(3).collect::<Vec<_>>()
        ));
    }

    let mut their_notes = Vec::new();
    for note in elf.iter_note_headers(&bytes).into_iter().flatten() {
        match note {
            Ok(note) => their_notes.push((
                note.name.trim_end_matches('\0').to_string(),
                note.n_type,
                note.desc.len(),
            )),
            Err(e) => {
                problems.push(format!("{}: goblin note error {e}", path.display()));
                break;
            }
        }
    }
    let my_notes: Vec<(String, u32, usize)> = ours
        .note_records()
        .iter()
        .map(|n| (n.name.clone(), n.n_type, n.desc_len))
        .collect();
    if their_notes != my_notes {
        problems.push(format!(
            "{}: notes differ:\n goblin   {their_notes:?}\n pymortem {my_notes:?}",
            path.display()
        ));
    }
    let prstatus = their_notes
        .iter()
        .filter(|n| n.0 == "CORE" && n.1 == 1)
        .count();
    if prstatus != ours.threads().len() {
        problems.push(format!(
            "{}: goblin sees {prstatus} NT_PRSTATUS, pymortem {} threads",
            path.display(),
            ours.threads().len()
        ));
    }
    problems
}

#[test]
fn synthetic_core_agrees_with_goblin() {
    let dir = tempfile::tempdir().unwrap();
    let path = support::write_temp(dir.path(), "core", &support::synth::sample().build());
    let problems = compare(&path);
    support::assert_no_problems(&problems);
}

#[test]
fn sample_cores_agree_with_goblin() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    // One scenario per interpreter and producer keeps this quick; the parse
    // code paths do not depend on the scenario.
    let cores: Vec<&str> = manifest
        .iter()
        .filter(|e| e["scenario"] == "threads")
        .map(|e| e["core"].as_str().unwrap())
        .collect();
    assert!(
        cores.len() >= 24,
        "expected a threads core per interpreter and producer, got {}",
        cores.len()
    );
    let problems: Vec<String> = cores
        .iter()
        .flat_map(|c| compare(std::path::Path::new(c)))
        .collect();
    support::assert_no_problems(&problems);
}
