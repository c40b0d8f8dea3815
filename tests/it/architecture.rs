//! The library's structural rules, checked on its source: typed errors,
//! typed layout offsets, layers without cycles, and x86-64 facts kept
//! behind the architecture seam. Each rule names the lines that break it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The library's files: everything under `src/` except the binary's own
/// (`main.rs` and the `cli` folder, which only the binary compiles).
fn library_files() -> Vec<PathBuf> {
    let src = src();
    rust_files(&src)
        .into_iter()
        .filter(|p| p != &src.join("main.rs") && !p.starts_with(src.join("cli")))
        .collect()
}

/// A line without its `//` comment (a `//` inside a string literal is rare
/// enough in this code that cutting there only hides text, never adds it).
fn code_of(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    match line.find(" //") {
        Some(at) if !line[..at].contains('"') => &line[..at],
        _ => line,
    }
}

/// The line index where a file's inline unit-test module begins (they may
/// use what they test), or the line count.
fn tests_start(lines: &[&str]) -> usize {
    (0..lines.len())
        .find(|&n| {
            lines[n].trim() == "#[cfg(test)]"
                && lines.get(n + 1).is_some_and(|next| {
                    let next = next.trim();
                    next.starts_with("mod ") && next.ends_with('{')
                })
        })
        .unwrap_or(lines.len())
}

/// The source lines of the library that match `hit`, as `path:line: text`.
fn offending_lines(files: &[PathBuf], hit: impl Fn(&str) -> bool) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines[..tests_start(&lines)].iter().enumerate() {
            if hit(code_of(line)) {
                let shown = path.strip_prefix(root).unwrap_or(path).display();
                out.push(format!("{shown}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    out
}

#[test]
fn library_errors_are_typed() {
    let bad = offending_lines(&library_files(), |code| {
        code.contains("Result<") && code.contains(", String>")
    });
    assert!(
        bad.is_empty(),
        "Result<_, String> in the library:\n{}",
        bad.join("\n")
    );
}

#[test]
fn layout_is_read_through_typed_offsets() {
    let layout_dir = src().join("layout");
    let files: Vec<PathBuf> = library_files()
        .into_iter()
        .filter(|p| !p.starts_with(&layout_dir))
        .collect();
    let bad = offending_lines(&files, |code| {
        [".offset(\"", ".field(\"", ".size(\"", "offset_of(\""]
            .iter()
            .any(|call| code.contains(call))
    });
    assert!(
        bad.is_empty(),
        "string-keyed layout lookups outside layout/:\n{}",
        bad.join("\n")
    );
}

/// Whether `code` branches on a CPython version: `major_minor()`, a
/// comparison of a `.major`/`.minor` field, of a `(major, minor)` literal or
/// of a `version` with a `PythonVersion`, a match arm on such a literal, or
/// a match on the pair.
fn compares_versions(code: &str) -> bool {
    const COMPARISONS: [&str; 6] = ["==", "!=", ">=", "<=", ">", "<"];
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    // A comparison operator right after the operand (`at`) or right before
    // it (`start`); `->` and `=>` are not comparisons.
    let compared = |start: usize, at: usize| {
        let after = code[at..].trim_start();
        let before = code[..start].trim_end();
        COMPARISONS
            .iter()
            .any(|op| after.starts_with(op) && !after.starts_with("=>"))
            || COMPARISONS.iter().any(|op| {
                before.ends_with(op) && !before.ends_with("->") && !before.ends_with("=>")
            })
    };
    if code.contains("major_minor()") || (code.contains(".major,") && code.contains(".minor)")) {
        return true;
    }
    // A `(major, minor)` literal compared, or matched in an arm.
    for prefix in ["(2, ", "(3, "] {
        let mut from = 0;
        while let Some(found) = code[from..].find(prefix) {
            let start = from + found;
            let digits = code[start + prefix.len()..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            from = start + prefix.len() + digits;
            if digits == 0 || !code[from..].starts_with(')') {
                continue;
            }
            let at = from + 1;
            let arm = code[at..].trim_start();
            if compared(start, at) || arm.starts_with("=>") || arm.starts_with("if ") {
                return true;
            }
        }
    }
    let of_python = code.contains("PythonVersion");
    for name in [".major", ".minor", "version"] {
        let mut from = 0;
        while let Some(found) = code[from..].find(name) {
            let mut start = from + found;
            let at = start + name.len();
            from = at;
            if code[at..].starts_with(is_ident) {
                continue;
            }
            if name.starts_with('.') {
                // The operand starts at its receiver: `self.version.minor`.
                start = code[..start]
                    .trim_end_matches(|c: char| is_ident(c) || c == '.')
                    .len();
            } else if code[..start].ends_with(is_ident) || !of_python {
                continue;
            }
            if compared(start, at) {
                return true;
            }
        }
    }
    false
}

#[test]
fn version_comparisons_are_recognised() {
    for hit in [
        "if version.major_minor() >= (3, 11) {",
        "let py2 = self.version.major == 2;",
        "&& self.version.minor >= 12",
        "if 3 <= v.minor {",
        "self.version >= PythonVersion::parse(\"3.12.0\")",
        "match (v.major, v.minor) {",
        "\"fatal_error\" => Some(if python_minor.is_some_and(|v| v >= (3, 9)) {",
        "(3, 12) if word & 1 != 0 => word.wrapping_add(1),",
        "(3, 11) => match word {",
    ] {
        assert!(compares_versions(hit), "not recognised: {hit}");
    }
    for clean in [
        "let rules = process.python().map(|p| p.version.rules());",
        "u32::from(p.version.major) << 24",
        "python_version: process.python().map(|p| p.version.to_string()),",
        "fn version(&self) -> PythonVersion {",
        "let major = parts.next()?.parse().ok()?;",
        "if manifest.format != FORMAT || manifest.version != VERSION {",
        "let layout = tables::builtin(3, 13).unwrap().layout_for(\"3.13.0\");",
        "Some((3, 14))",
    ] {
        assert!(!compares_versions(clean), "taken for a comparison: {clean}");
    }
}

/// What each version does differently is decided once, in `layout::Facts`;
/// the version itself is defined and detected in `interpreter` (the layer
/// below). The rest of the library asks the facts, so a new version is a
/// table plus facts. Reports may print the version but not branch on it.
#[test]
fn version_rules_live_in_facts() {
    let exempt = [src().join("layout"), src().join("interpreter")];
    let files: Vec<PathBuf> = library_files()
        .into_iter()
        .filter(|p| !exempt.iter().any(|dir| p.starts_with(dir)))
        .collect();
    let bad = offending_lines(&files, compares_versions);
    assert!(
        bad.is_empty(),
        "version comparisons outside layout/ (make them facts):\n{}",
        bad.join("\n")
    );
}

/// x86-64 register names; `r8`–`r15` included.
fn is_x86_register(word: &str) -> bool {
    const NAMED: &[&str] = &[
        "rip",
        "rsp",
        "rbp",
        "rax",
        "rbx",
        "rcx",
        "rdx",
        "rsi",
        "rdi",
        "eflags",
        "fs_base",
        "gs_base",
        "X86_64Registers",
    ];
    NAMED.contains(&word)
        || word
            .strip_prefix('r')
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (8..=15).contains(&n))
}

/// An AArch64 register name: x0–x30, or a system register pymortem reads.
fn is_aarch64_register(word: &str) -> bool {
    ["tpidr_el0", "pstate"].contains(&word)
        || word
            .strip_prefix('x')
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| n <= 30)
}

#[test]
fn x86_registers_are_named_only_in_arch() {
    let arch = src().join("arch");
    let files: Vec<PathBuf> = library_files()
        .into_iter()
        .filter(|p| !p.starts_with(&arch))
        .collect();
    let bad = offending_lines(&files, |code| {
        code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| is_x86_register(word) || is_aarch64_register(word))
    });
    assert!(
        bad.is_empty(),
        "x86-64 or AArch64 registers named outside src/arch/:\n{}",
        bad.join("\n")
    );
}

/// The top-level modules a file refers to through `crate::`.
fn crate_references(text: &str) -> BTreeSet<String> {
    let code: String = text.lines().map(code_of).collect::<Vec<_>>().join("\n");
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::B, c}`: each top-level name at depth one.
            let mut depth = 1;
            let mut name = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => at_start = true,
                    c if at_start && (c.is_ascii_alphanumeric() || c == '_') => name.push(c),
                    c if !c.is_whitespace() && !name.is_empty() => {
                        found.insert(std::mem::take(&mut name));
                        at_start = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                found.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// The library's top-level modules and which others each refers to.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = src();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in library_files() {
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let text = lines[..tests_start(&lines)].join("\n");
        let refs = graph.entry(module.clone()).or_default();
        refs.extend(crate_references(&text).into_iter().filter(|m| *m != module));
    }
    graph
}

#[test]
fn crate_references_are_parsed() {
    let refs = crate_references(
        "use crate::memory::X;\nuse crate::{layout::{A, B}, python};\n// crate::report\n",
    );
    let names: Vec<&str> = refs.iter().map(String::as_str).collect();
    assert_eq!(names, ["layout", "memory", "python"]);
}

#[test]
fn top_level_modules_have_no_cycle() {
    let graph = module_graph();
    // Depth-first search for a back edge; each cycle found is printed as
    // the chain of modules that closes it.
    let mut cycles = BTreeSet::new();
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        cycles: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut chain = path[at..].to_vec();
            chain.push(node.to_string());
            cycles.insert(chain.join(" → "));
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next) {
                visit(next, graph, path, done, cycles);
            }
        }
        path.pop();
        done.insert(node.to_string());
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut cycles);
    }
    assert!(
        cycles.is_empty(),
        "module cycles:\n{}",
        cycles.into_iter().collect::<Vec<_>>().join("\n")
    );
}
