//! dwz supplementary files: Fedora, RHEL, Debian and Ubuntu run dwz over
//! their debug files, which moves the DWARF several files share (types,
//! abstract functions, strings) into one supplementary file they refer to
//! through `.gnu_debugaltlink` (or DWARF 5's `.debug_sup`).
//!
//! Three debug files of the Debian 3.11 interpreter (the `python3.11`
//! executable's, `libpython3.11.so.1.0`'s and `_ctypes`'s) are run through
//! dwz in a temporary debug folder, as GNU links and as DWARF 5 links; the
//! interpreter's DWARF alone gains nothing from dwz (it is LTO-built), so
//! the three together are what moves its types. pymortem must read every
//! result from them exactly as from the original files (decompressed
//! copies, so that dwz is the only difference): `threads --native`
//! (native frames, source lines, inlined frames), `check` (findings),
//! `layout` (every struct and global from DWARF) and `info`. The same for
//! a pyenv interpreter whose DWARF is embedded in `libpython` and
//! `_ctypes` (a sysroot of hard links, with the two rewritten by dwz).
//! The supplementary file is found by its name, by build-id in a debug
//! folder, in a debug folder's `.dwz/`, and in a `--search-path` tree; one
//! with another build-id is rejected, a missing one is reported with its
//! name and build-id (and the layout is then not taken from the DWARF),
//! and a name that climbs out of the sysroot stays inside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use pymortem::modules::{ElfImage, hex, resolve_in_root};
use serde_json::Value;

use crate::support;

/// The interpreter whose debug files are run through dwz.
const INTERP: &str = "debian-3.11";
/// Its cores compared: native stacks, and a crash with findings.
const SCENARIOS: [&str; 2] = ["threads", "double_free"];
/// The supplementary file's name under `.dwz/`, as Debian names it.
const DWZ_NAME: &str = "x86_64-linux-gnu/python3.11.debug";

/// dwz, objcopy and readelf must be installed: the test fails, never skips.
fn require_tools() {
    for tool in ["dwz", "objcopy", "readelf"] {
        let ok = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "{tool} is missing: install it (apt-get install -y dwz binutils); \
             sample-cores/setup-interpreters.sh does"
        );
    }
}

/// Run `command`, which must succeed; its standard output.
fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sh -c script` with `args` as `$1`, `$2`, …: its standard output.
fn sh(script: &str, args: &[&Path]) -> String {
    run(Command::new("sh").args(["-c", script, "sh"]).args(args))
}

fn build_id(path: &Path) -> Vec<u8> {
    ElfImage::open(path)
        .and_then(|i| i.build_id())
        .unwrap_or_else(|| panic!("{}: no build-id", path.display()))
}

/// `.build-id/xx/rest.debug` of `id`.
fn build_id_path(id: &[u8]) -> String {
    let id = hex(id);
    format!(".build-id/{}/{}.debug", &id[..2], &id[2..])
}

/// Hard-link `from` at `to` (copy across file systems), making the folders.
fn link(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// The size of a section of `file`, from readelf.
fn section_size(file: &Path, section: &str) -> Option<u64> {
    let out = run(Command::new("readelf").args(["-S", "-W"]).arg(file));
    out.lines().find_map(|line| {
        let rest = line.split_once(']')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        (fields.first() == Some(&section))
            .then(|| u64::from_str_radix(fields.get(4)?, 16).ok())
            .flatten()
    })
}

/// How many DIEs readelf shows in `file`.
fn die_count(file: &Path) -> u64 {
    sh(
        "readelf --debug-dump=info \"$1\" 2>/dev/null | grep -c '^ *<[0-9a-f]*><' || true",
        &[file],
    )
    .trim()
    .parse()
    .unwrap()
}

/// Whether readelf shows a DIE of `file` referring into its supplementary
/// file (`<alt 0x…>`, `alt indirect string`); stops at the first.
fn refers_to_alt(file: &Path) -> bool {
    sh(
        "readelf --debug-dump=info \"$1\" 2>/dev/null | grep -m1 -c 'alt 0x\\|alt indirect' || true",
        &[file],
    )
    .trim()
        == "1"
}

/// The folders made once for every test of this file: the original debug
/// files (decompressed) and their dwz'd versions.
struct Prepared {
    root: PathBuf,
    /// The three originals, decompressed, under `.build-id/`.
    orig: PathBuf,
    /// dwz -m -r: `.gnu_debugaltlink` to `../../.dwz/x86_64-linux-gnu/python3.11.debug`.
    gnu: PathBuf,
    /// dwz -5 -m -r: `.debug_sup`.
    sup5: PathBuf,
    /// Each file's `.build-id/…` path, with what it is.
    files: Vec<(&'static str, String)>,
    /// The manifest entries of [`SCENARIOS`].
    entries: Vec<Value>,
}

impl Prepared {
    fn gnu_sup(&self) -> PathBuf {
        self.gnu.join(".dwz").join(DWZ_NAME)
    }
    fn sup5_sup(&self) -> PathBuf {
        self.sup5.join(".dwz").join(DWZ_NAME)
    }
    fn python_debug(&self, dir: &Path) -> PathBuf {
        dir.join(&self.files[0].1)
    }
}

static PREPARED: OnceLock<Option<Prepared>> = OnceLock::new();

extern "C" fn remove_prepared() {
    if let Some(Some(p)) = PREPARED.get() {
        let _ = std::fs::remove_dir_all(&p.root);
    }
}

/// The prepared folders; `None` without the sample-core matrix (the test
/// then returns, and the run says it did not run).
fn prepared() -> Option<&'static Prepared> {
    PREPARED
        .get_or_init(|| {
            if support::matrix_missing() {
                return None;
            }
            require_tools();
            Some(prepare())
        })
        .as_ref()
}

fn prepare() -> Prepared {
    let manifest = support::manifest();
    let entries: Vec<Value> = SCENARIOS
        .iter()
        .map(|scenario| {
            manifest
                .iter()
                .find(|e| {
                    e["interp"] == INTERP && e["scenario"] == *scenario && e["kind"] == "kernel"
                })
                .unwrap_or_else(|| panic!("no {INTERP} {scenario} kernel core in the manifest"))
                .clone()
        })
        .collect();
    let entry = &entries[0];
    let package_debug_dir = entry["debug_dirs"][0].as_str().unwrap().to_string();
    let process = support::open(entry);
    let module_id = |name: &str| -> Vec<u8> {
        process
            .modules()
            .modules()
            .iter()
            .find(|m| m.name().starts_with(name))
            .and_then(|m| m.build_id.clone())
            .unwrap_or_else(|| panic!("{INTERP}: no module {name} with a build-id in the core"))
    };
    let root_dir = entry["sysroot"].as_str().unwrap_or("/");
    let libpython = resolve_in_root(
        Path::new(root_dir),
        "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
    )
    .expect("the interpreter's package ships libpython3.11.so.1.0");
    let files = vec![
        ("python3.11", build_id_path(&module_id("python3.11"))),
        ("libpython3.11.so.1.0", build_id_path(&build_id(&libpython))),
        ("_ctypes", build_id_path(&module_id("_ctypes."))),
    ];
    let root = tempfile::Builder::new()
        .prefix("pymortem-dwz-")
        .tempdir()
        .unwrap()
        .keep();
    // SAFETY: registers a plain function, called once by libc's exit.
    unsafe { libc::atexit(remove_prepared) };
    let orig = root.join("orig");
    for (what, rel) in &files {
        let from = Path::new(&package_debug_dir).join(rel);
        assert!(from.is_file(), "{what}: no debug file {}", from.display());
        let to = orig.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        // dwz does not read compressed sections.
        run(Command::new("objcopy")
            .arg("--decompress-debug-sections")
            .arg(&from)
            .arg(&to));
    }
    let dwz = |dir: &Path, extra: &[&str]| {
        for (_, rel) in &files {
            let to = dir.join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(orig.join(rel), &to).unwrap();
        }
        let common = dir.join(".dwz").join(DWZ_NAME);
        std::fs::create_dir_all(common.parent().unwrap()).unwrap();
        let mut command = Command::new("dwz");
        command.arg("-m").arg(&common).arg("-r").args(extra);
        command.args(files.iter().map(|(_, rel)| dir.join(rel)));
        run(&mut command);
    };
    let gnu = root.join("gnu");
    dwz(&gnu, &[]);
    let sup5 = root.join("sup5");
    dwz(&sup5, &["-5"]);
    Prepared {
        root,
        orig,
        gnu,
        sup5,
        files,
        entries,
    }
}

/// A pymortem report: its exit code and its JSON, with each `(path, name)`
/// of `replace` written as the name, so that reports made from files in
/// different folders compare equal. It must validate against the JSON schema.
fn report(args: &[String], replace: &[(&Path, &str)]) -> (i32, Value) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, mut stdout, stderr) = support::pymortem(&args);
    assert!(
        (0..=3).contains(&code) && code != 2,
        "pymortem {}: exit {code}: {stderr}",
        args.join(" ")
    );
    let raw: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("pymortem {}: {e}", args.join(" ")));
    // Supplementary statuses, found or missing, are as the schema says.
    support::assert_no_problems(&support::schema_violations(&raw));
    for (path, name) in replace {
        stdout = stdout.replace(&path.display().to_string(), name);
    }
    (code, serde_json::from_str(&stdout).unwrap())
}

/// The commands whose every result must not change.
const COMMANDS: [&[&str]; 4] = [
    &["threads", "--native", "--json", "--no-cache"],
    &["check", "--json", "--no-cache"],
    &["layout", "--json", "--no-cache"],
    &["info", "--json", "--no-cache"],
];

/// `command` on `entry`'s core with the debug folders `dirs` first.
fn args_with(command: &[&str], dirs: &[&Path], entry: &Value, more: &[String]) -> Vec<String> {
    let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    for dir in dirs {
        args.extend(["--debug-dir".into(), dir.display().to_string()]);
    }
    args.extend(more.iter().cloned());
    args.extend(support::search_args(entry));
    args.push(entry["core"].as_str().unwrap().into());
    args
}

/// Each module's `supplementary` taken out of an `info` report, by name.
fn take_supplementary(info: &mut Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for m in info["modules"].as_array_mut().unwrap() {
        let name = m["name"].as_str().unwrap().to_string();
        let sup = m
            .as_object_mut()
            .unwrap()
            .remove("supplementary")
            .expect("every module has a supplementary key");
        out.insert(name, sup);
    }
    out
}

/// The reports with the original debug files, by (command, scenario).
fn originals(p: &Prepared) -> &'static BTreeMap<(usize, usize), (i32, Value)> {
    static ORIGINALS: OnceLock<BTreeMap<(usize, usize), (i32, Value)>> = OnceLock::new();
    ORIGINALS.get_or_init(|| {
        let mut out = BTreeMap::new();
        for (c, command) in COMMANDS.iter().enumerate() {
            for (s, entry) in p.entries.iter().enumerate() {
                let args = args_with(command, &[&p.orig], entry, &[]);
                out.insert((c, s), report(&args, &[(&p.orig, "DEBUG-DIR")]));
            }
        }
        out
    })
}

/// Every result with the dwz'd folder `dir` (and `more` arguments) against
/// the originals; each module's supplementary status from `info`.
fn compare_all(
    p: &Prepared,
    dir: &Path,
    more: &[String],
    label: &str,
) -> (Vec<String>, BTreeMap<String, Value>) {
    let mut problems = Vec::new();
    let mut statuses = BTreeMap::new();
    for (c, command) in COMMANDS.iter().enumerate() {
        for (s, entry) in p.entries.iter().enumerate() {
            let args = args_with(command, &[dir], entry, more);
            let (code, mut got) = report(&args, &[(dir, "DEBUG-DIR")]);
            let (want_code, want) = &originals(p)[&(c, s)];
            let mut want = want.clone();
            let what = format!("{label}: {} on {}", command[0], SCENARIOS[s]);
            if command[0] == "info" {
                let original = take_supplementary(&mut want);
                if original.values().any(|v| !v.is_null()) {
                    problems.push(format!("{what}: the originals name a supplementary file"));
                }
                statuses = take_supplementary(&mut got);
            }
            if command[0] == "layout" {
                for (name, report) in [("original", &want), ("dwz", &got)] {
                    if report["layout"]["source"]["kind"] != "dwarf" {
                        problems.push(format!(
                            "{what}: the {name} layout is from {}, not DWARF",
                            report["layout"]["source"]
                        ));
                    }
                }
                let structs = want["layout"]["structs"].as_object().map_or(0, |s| s.len());
                if structs < 20 {
                    problems.push(format!("{what}: only {structs} structs from the originals"));
                }
            }
            if code != *want_code {
                problems.push(format!(
                    "{what}: exit {code}, {want_code} with the originals"
                ));
            }
            if got != want {
                problems.push(format!(
                    "{what}: differs from the originals:\n{}",
                    first_difference(&want, &got, "")
                ));
            }
        }
    }
    (problems, statuses)
}

/// Where two JSON values first differ, as a path and both values.
fn first_difference(a: &Value, b: &Value, at: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()) {
                if x.get(key) != y.get(key) {
                    return match (x.get(key), y.get(key)) {
                        (Some(u), Some(v)) => first_difference(u, v, &format!("{at}.{key}")),
                        (u, v) => format!("{at}.{key}: {u:?} vs {v:?}"),
                    };
                }
            }
            format!("{at}: equal")
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                if u != v {
                    return first_difference(u, v, &format!("{at}[{i}]"));
                }
            }
            format!("{at}: equal")
        }
        _ => {
            let show = |v: &Value| {
                let text = v.to_string();
                text.chars().take(400).collect::<String>()
            };
            format!("{at}: {} vs {}", show(a), show(b))
        }
    }
}

/// The supplementary status of the modules whose debug files dwz rewrote
/// (the executable and `_ctypes`; libpython is not mapped): found, at
/// `path` (shown as `shown`, when the report's paths were rewritten), by
/// `via`, through `link`.
fn check_found(
    statuses: &BTreeMap<String, Value>,
    (path, shown): (&Path, Option<&str>),
    via: &str,
    link: &str,
    label: &str,
) -> Vec<String> {
    let want_id = hex(&ElfImage::open(path)
        .map(|i| i.supplementary_ids())
        .and_then(|ids| ids.into_iter().next())
        .unwrap_or_default());
    let mut problems = Vec::new();
    for (name, status) in statuses {
        let rewritten = name == "python3.11" || name.starts_with("_ctypes.");
        if !rewritten {
            if !status.is_null() {
                problems.push(format!(
                    "{label}: {name} has a supplementary file: {status}"
                ));
            }
            continue;
        }
        let expected = serde_json::json!({
            "state": "found",
            "path": shown.map_or_else(|| path.display().to_string(), str::to_string),
            "build_id": want_id,
            "link": link,
            "via": via,
        });
        if *status != expected {
            problems.push(format!("{label}: {name}: {status}, expected {expected}"));
        }
    }
    problems
}

#[test]
fn dwz_moves_the_shared_dwarf_into_the_supplementary_file() {
    let Some(p) = prepared() else { return };
    let mut problems = Vec::new();
    let orig_python = p.python_debug(&p.orig);
    for (dir, sup, section) in [
        (&p.gnu, p.gnu_sup(), ".gnu_debugaltlink"),
        (&p.sup5, p.sup5_sup(), ".debug_sup"),
    ] {
        for (what, rel) in &p.files {
            if section_size(&dir.join(rel), section).is_none() {
                problems.push(format!("{what}: dwz wrote no {section}"));
            }
        }
        let python = p.python_debug(dir);
        let before = section_size(&orig_python, ".debug_info").unwrap();
        let after = section_size(&python, ".debug_info").unwrap();
        let sup_info = section_size(&sup, ".debug_info").unwrap_or(0);
        let sup_dies = die_count(&sup);
        eprintln!(
            "{section}: python3.11's .debug_info {before} -> {after} bytes; the supplementary \
             file holds {sup_dies} DIEs in {sup_info} bytes of .debug_info"
        );
        if after >= before || sup_dies < 10_000 {
            problems.push(format!(
                "{section}: dwz moved too little (python3.11 {before} -> {after} bytes, \
                 {sup_dies} DIEs in the supplementary file)"
            ));
        }
    }
    // GNU links: the DIEs refer into the supplementary file with the alt forms.
    for (what, rel) in &p.files {
        if !refers_to_alt(&p.gnu.join(rel)) {
            problems.push(format!("{what}: no DW_FORM_GNU_ref_alt or strp_alt"));
        }
    }
    // DWARF 5: the abbreviations use the standard sup forms.
    let abbrevs = sh(
        "readelf --debug-dump=abbrev \"$1\" 2>/dev/null | grep -m1 -c 'DW_FORM_ref_sup4\\|DW_FORM_strp_sup' || true",
        &[&p.python_debug(&p.sup5)],
    );
    if abbrevs.trim() != "1" {
        problems.push("-5: python3.11 uses no DW_FORM_ref_sup4/strp_sup".into());
    }
    support::assert_no_problems(&problems);
}

/// Every result with the dwz'd folder `dir` against the originals, and its
/// supplementary file `sup` found at the name its `link` gives.
fn compare_found_by_name(p: &Prepared, dir: &Path, sup: &Path, link: &str) -> Vec<String> {
    let (mut problems, statuses) = compare_all(p, dir, &[], link);
    let shown = format!("DEBUG-DIR/.dwz/{DWZ_NAME}");
    problems.extend(check_found(
        &statuses,
        (sup, Some(&shown)),
        "name",
        link,
        link,
    ));
    problems
}

#[test]
fn debug_files_with_a_gnu_debugaltlink_read_as_the_originals() {
    let Some(p) = prepared() else { return };
    let mut problems = compare_found_by_name(p, &p.gnu, &p.gnu_sup(), "gnu_debugaltlink");
    // A bundle carries the supplementary file, under its own build-id.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("dwz.pymortem");
    let entry = &p.entries[0];
    let mut args: Vec<String> = ["bundle", "--level", "1", "-o"].map(String::from).to_vec();
    args.push(bundle.display().to_string());
    args.extend(["--debug-dir".into(), p.gnu.display().to_string()]);
    args.extend(support::file_args(entry));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = support::pymortem(&args);
    assert_eq!(code, 0, "bundle: {stderr}");
    let bundled = |command: &[&str]| {
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        args.push(bundle.display().to_string());
        report(&args, &[(&bundle, "BUNDLE")]).1
    };
    let mut info = bundled(COMMANDS[3]);
    let sup_id = hex(&ElfImage::open(&p.gnu_sup()).unwrap().build_id().unwrap());
    let shown = format!("BUNDLE:debug/{sup_id}.debug");
    problems.extend(check_found(
        &take_supplementary(&mut info),
        (&p.gnu_sup(), Some(&shown)),
        "bundle",
        "gnu_debugaltlink",
        "bundle",
    ));
    let layout = bundled(COMMANDS[2]);
    let want = &originals(p)[&(2, 0)].1;
    if layout["layout"]["structs"] != want["layout"]["structs"] {
        problems.push("bundle: the layout differs from the original's".into());
    }
    support::assert_no_problems(&problems);
}

#[test]
fn debug_files_with_a_debug_sup_read_as_the_originals() {
    let Some(p) = prepared() else { return };
    let problems = compare_found_by_name(p, &p.sup5, &p.sup5_sup(), "debug_sup");
    support::assert_no_problems(&problems);
}

/// `info` and `layout` of the first scenario's core with `dirs` first and
/// `more` arguments: the modules' supplementary statuses, and problems
/// where the layout differs from the original's.
fn info_and_layout(
    p: &Prepared,
    dirs: &[&Path],
    more: &[String],
    replace: &[(&Path, &str)],
    label: &str,
) -> (BTreeMap<String, Value>, Value, Vec<String>) {
    let entry = &p.entries[0];
    let (_, mut info) = report(&args_with(COMMANDS[3], dirs, entry, more), replace);
    let statuses = take_supplementary(&mut info);
    let (_, layout) = report(&args_with(COMMANDS[2], dirs, entry, more), replace);
    let mut problems = Vec::new();
    let want = &originals(p)[&(2, 0)].1;
    if layout["layout"]["structs"] != want["layout"]["structs"]
        || layout["layout"]["globals"] != want["layout"]["globals"]
    {
        problems.push(format!("{label}: the layout differs from the original's"));
    }
    (statuses, info, problems)
}

/// Problems unless, with the debug folders `dirs` (and `more` arguments),
/// the layout equals the original's and the supplementary file is found at
/// `at`, `(via, link)`.
fn found_at(
    p: &Prepared,
    dirs: &[&Path],
    more: &[String],
    at: &Path,
    (via, link): (&str, &str),
    label: &str,
) -> Vec<String> {
    let (statuses, _, mut problems) = info_and_layout(p, dirs, more, &[], label);
    problems.extend(check_found(&statuses, (at, None), via, link, label));
    problems
}

/// A debug folder with hard links to the dwz'd debug files of `from`, and
/// no supplementary file.
fn debug_files_only(p: &Prepared, from: &Path, to: &Path) {
    for (_, rel) in &p.files {
        link(&from.join(rel), &to.join(rel));
    }
}

#[test]
fn supplementary_files_are_found_by_build_id_in_dwz_folders_and_search_paths() {
    let Some(p) = prepared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    // By build-id in the debug folder: the name leads nowhere.
    let by_id = dir.path().join("by-id");
    debug_files_only(p, &p.gnu, &by_id);
    let sup_id = ElfImage::open(&p.gnu_sup()).unwrap().build_id().unwrap();
    let at = by_id.join(build_id_path(&sup_id));
    link(&p.gnu_sup(), &at);
    problems.extend(found_at(
        p,
        &[&by_id],
        &[],
        &at,
        ("build_id", "gnu_debugaltlink"),
        "build-id",
    ));
    // In the .dwz folder of another debug folder.
    let files = dir.path().join("files");
    debug_files_only(p, &p.gnu, &files);
    let other = dir.path().join("other");
    let at = other.join(".dwz").join(DWZ_NAME);
    link(&p.gnu_sup(), &at);
    problems.extend(found_at(
        p,
        &[&files, &other],
        &[],
        &at,
        ("dwz_dir", "gnu_debugaltlink"),
        ".dwz",
    ));
    // In a --search-path tree, under another name: DWARF 5's file has no
    // build-id note, only its .debug_sup checksum.
    let files5 = dir.path().join("files5");
    debug_files_only(p, &p.sup5, &files5);
    let tree = dir.path().join("tree");
    let at = tree.join("somewhere/common-dwarf");
    link(&p.sup5_sup(), &at);
    let more = ["--search-path".to_string(), tree.display().to_string()];
    problems.extend(found_at(
        p,
        &[&files5],
        &more,
        &at,
        ("search_path", "debug_sup"),
        "search path",
    ));
    support::assert_no_problems(&problems);
}

/// The diagnostics' messages of a report.
fn messages(report: &Value) -> Vec<String> {
    support::diagnostic_messages(report)
}

/// Problems unless the layout of the first scenario's core with `dirs`
/// is not from DWARF and its attempt says the DWARF is incomplete.
fn layout_refuses_incomplete_dwarf(p: &Prepared, dirs: &[&Path], label: &str) -> Vec<String> {
    let entry = &p.entries[0];
    let (_, layout) = report(&args_with(COMMANDS[2], dirs, entry, &[]), &[]);
    let mut problems = Vec::new();
    if layout["layout"]["source"]["kind"] == "dwarf" {
        problems.push(format!(
            "{label}: the layout is still taken from the incomplete DWARF"
        ));
    }
    let attempts = layout["attempts"].to_string();
    if !attempts.contains("incomplete DWARF") {
        problems.push(format!(
            "{label}: the layout attempts do not say the DWARF is incomplete: {attempts}"
        ));
    }
    problems
}

#[test]
fn a_missing_supplementary_file_is_reported_with_its_name_and_build_id() {
    let Some(p) = prepared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    debug_files_only(p, &p.gnu, &files);
    let sup_id = hex(&ElfImage::open(&p.gnu_sup()).unwrap().build_id().unwrap());
    let entry = &p.entries[0];
    let (_, mut info) = report(&args_with(COMMANDS[3], &[&files], entry, &[]), &[]);
    let statuses = take_supplementary(&mut info);
    let mut problems = Vec::new();
    let name = format!("../../.dwz/{DWZ_NAME}");
    for module in ["python3.11", "_ctypes.cpython-311-x86_64-linux-gnu.so"] {
        let status = &statuses[module];
        if status["state"] != "missing"
            || status["name"] != name.as_str()
            || status["build_id"] != sup_id.as_str()
            || !status["reason"]
                .as_str()
                .unwrap_or("")
                .contains("incomplete")
        {
            problems.push(format!("{module}: {status}"));
        }
    }
    let said = messages(&info)
        .iter()
        .filter(|m| m.contains(&name) && m.contains(&sup_id) && m.contains("DWARF is incomplete"))
        .count();
    if said != 2 {
        problems.push(format!(
            "{said} diagnostics say the supplementary file is missing, not 2: {:?}",
            messages(&info)
        ));
    }
    problems.extend(layout_refuses_incomplete_dwarf(p, &[&files], "missing"));
    // The Python stacks do not depend on it: the layout comes from elsewhere.
    let (_, threads) = report(&args_with(COMMANDS[0], &[&files], entry, &[]), &[]);
    let want = &originals(p)[&(0, 0)].1;
    let python_frames = |r: &Value| -> Vec<Value> {
        r["threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["frames"].clone())
            .collect()
    };
    if python_frames(&threads) != python_frames(want) {
        problems.push("without the supplementary file the Python frames differ".into());
    }
    support::assert_no_problems(&problems);
}

#[test]
fn a_supplementary_file_with_another_build_id_is_rejected() {
    let Some(p) = prepared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    debug_files_only(p, &p.gnu, &files);
    // Another build's supplementary file where the name leads.
    let impostor = files.join(".dwz").join(DWZ_NAME);
    link(&p.sup5_sup(), &impostor);
    let want = hex(&ElfImage::open(&p.gnu_sup()).unwrap().build_id().unwrap());
    let has = hex(&ElfImage::open(&impostor).unwrap().supplementary_ids()[0]);
    assert_ne!(want, has);
    let entry = &p.entries[0];
    let (_, mut info) = report(&args_with(COMMANDS[3], &[&files], entry, &[]), &[]);
    let statuses = take_supplementary(&mut info);
    let mut problems = Vec::new();
    if statuses["python3.11"]["state"] != "missing" {
        problems.push(format!("python3.11: {}", statuses["python3.11"]));
    }
    let rejected = format!(
        "{}: build-id {has}, not {want} as the link says",
        impostor.display()
    );
    if !messages(&info).iter().any(|m| m.contains(&rejected)) {
        problems.push(format!(
            "no diagnostic rejects {}: {:?}",
            impostor.display(),
            messages(&info)
        ));
    }
    problems.extend(layout_refuses_incomplete_dwarf(
        p,
        &[&files],
        "wrong build-id",
    ));
    support::assert_no_problems(&problems);
}

/// Rewrite `file`'s `.gnu_debugaltlink` to `name` and `id`.
fn set_altlink(file: &Path, name: &str, id: &[u8]) {
    let mut bytes = name.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(id);
    let section = file.with_extension("altlink");
    std::fs::write(&section, bytes).unwrap();
    let mut arg = std::ffi::OsString::from(".gnu_debugaltlink=");
    arg.push(&section);
    run(Command::new("objcopy")
        .arg("--update-section")
        .arg(arg)
        .arg(file));
}

#[test]
fn a_link_that_climbs_out_of_the_sysroot_stays_inside() {
    let Some(p) = prepared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let sup_id = ElfImage::open(&p.gnu_sup()).unwrap().build_id().unwrap();
    // The right file lies just outside the sysroot, where a path joined
    // without care would reach.
    let outside = base.join("outside/python3.11.debug");
    link(&p.gnu_sup(), &outside);
    let mut problems = Vec::new();
    for (case, name) in [
        // .build-id/xx -> debug -> lib -> usr -> root -> base.
        ("dot-dot", "../../../../../../outside/python3.11.debug"),
        // An absolute symlink restarts at the sysroot.
        ("symlink", "../../escape/python3.11.debug"),
    ] {
        let root = base.join(case);
        let debug_dir = root.join("usr/lib/debug");
        let rel = &p.files[2].1; // _ctypes: small to copy.
        let file = debug_dir.join(rel);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::copy(p.gnu.join(rel), &file).unwrap();
        set_altlink(&file, name, &sup_id);
        std::os::unix::fs::symlink(base.join("outside"), debug_dir.join("escape")).unwrap();
        let args: Vec<String> = [
            "info",
            "--json",
            "--no-cache",
            "--sysroot",
            &root.display().to_string(),
            "--debug-dir",
            &debug_dir.display().to_string(),
            p.entries[0]["core"].as_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        let (_, mut info) = report(&args, &[]);
        let statuses = take_supplementary(&mut info);
        let status = &statuses["_ctypes.cpython-311-x86_64-linux-gnu.so"];
        let reason = status["reason"].as_str().unwrap_or("");
        if status["state"] != "missing" || !reason.contains("was not found") {
            problems.push(format!("{case}: {status}"));
        }
        // Every path tried is inside the sysroot or the host's debug folder.
        let tried = reason
            .split_once("(tried ")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(list, _)| list)
            .unwrap_or("");
        for path in tried.split(", ") {
            if !path.starts_with(&root.display().to_string()) && !path.starts_with("/usr/lib/debug")
            {
                problems.push(format!("{case}: tried {path}, outside the sysroot"));
            }
        }
        if reason.contains(&outside.display().to_string()) {
            problems.push(format!("{case}: reached {}", outside.display()));
        }
    }
    support::assert_no_problems(&problems);
}

/// Every function of the ELF file `file` with code: its address, from nm.
fn function_addresses(file: &Path) -> Vec<u64> {
    let out = run(Command::new("nm")
        .args(["--defined-only", "--format=posix"])
        .arg(file));
    let mut addresses: Vec<u64> = out
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let kind = fields.get(1)?;
            (*kind == "T" || *kind == "t")
                .then(|| u64::from_str_radix(fields.get(2)?, 16).ok())
                .flatten()
        })
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    addresses
}

/// Problems where the DWARF readers answer differently for the original
/// file and its dwz'd copy with the supplementary file attached: the call
/// sites of every function (their targets name callees through
/// `DW_AT_call_origin`, which dwz turns into references into the
/// supplementary file), the values passed at each call, and the source
/// lines and inlined functions at each call.
fn same_call_sites(original: &Path, rewritten: &Path, supplementary: &Path) -> Vec<String> {
    use pymortem::dwarf::{SourceLines, call_site_values_at};
    let label = rewritten
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let original = ElfImage::open(original).unwrap();
    let rewritten = ElfImage::open(rewritten)
        .unwrap()
        .with_supplementary(ElfImage::open(supplementary).unwrap());
    let (Some(want), Some(got)) = (SourceLines::new(&original), SourceLines::new(&rewritten))
    else {
        return vec![format!("{label}: no source lines")];
    };
    let mut problems = Vec::new();
    let (mut sites, mut named, mut pcs) = (0, 0, Vec::new());
    // Every fourth function, and the values at 1500 of their calls: the
    // readers are made for the few calls of a stack, not for all at once.
    for entry in function_addresses(original.path()).into_iter().step_by(4) {
        let (a, b) = (want.call_sites(entry), got.call_sites(entry));
        if a != b {
            problems.push(format!("{label}: call sites of {entry:#x}: {a:?} vs {b:?}"));
        }
        sites += a.len();
        named += a.iter().filter(|s| s.target.is_some()).count();
        pcs.extend(a.iter().map(|s| s.pc));
    }
    let some: Vec<u64> = pcs
        .iter()
        .copied()
        .step_by(pcs.len().div_ceil(1500).max(1))
        .collect();
    let values = (
        call_site_values_at(&original, &some),
        call_site_values_at(&rewritten, &some),
    );
    match values {
        (Ok(a), Ok(b)) if a == b => {}
        (a, b) => problems.push(format!(
            "{label}: call-site values differ ({:?} vs {:?} calls read)",
            a.map(|v| v.len()),
            b.map(|v| v.len())
        )),
    }
    let mut inlined = 0;
    for &pc in &pcs {
        let (a, b) = (want.frames(pc - 1), got.frames(pc - 1));
        if a != b {
            problems.push(format!("{label}: frames at {:#x}: {a:?} vs {b:?}", pc - 1));
        }
        inlined += usize::from(a.len() > 1);
    }
    eprintln!(
        "pyenv: {label}: {sites} call sites ({named} with a callee; values compared at {}), \
         {inlined} inside inlined code, alike in the original and the dwz'd file",
        some.len()
    );
    if named == 0 || inlined == 0 {
        problems.push(format!("{label}: too few call sites to compare"));
    }
    problems
}

/// pyenv's interpreters carry their DWARF in the files themselves: a
/// sysroot of hard links to every module file of the cores, and a copy
/// whose `libpython` and `_ctypes` went through dwz (with a twin of
/// `libpython`, whose DWARF it then shares whole: alone with `_ctypes`
/// too little of it is common for dwz to move), the supplementary file at
/// the absolute name `/usr/lib/debug/.dwz/…` inside the sysroot. Every
/// result is the same.
#[test]
fn embedded_dwarf_with_a_supplementary_file_reads_as_the_original() {
    if support::matrix_missing() {
        return;
    }
    require_tools();
    let manifest = support::manifest();
    let entries: Vec<Value> = SCENARIOS
        .iter()
        .map(|scenario| {
            manifest
                .iter()
                .find(|e| {
                    e["interp"] == "pyenv-3.11.7"
                        && e["scenario"] == *scenario
                        && e["kind"] == "kernel"
                })
                .unwrap_or_else(|| panic!("no pyenv-3.11.7 {scenario} kernel core"))
                .clone()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    let orig = base.join("orig");
    let dwz = base.join("dwz");
    // Every module file of the cores, at its recorded path in both sysroots.
    let mut recorded = std::collections::BTreeSet::new();
    for entry in &entries {
        let mut args = vec!["info".to_string(), "--json".into(), "--no-cache".into()];
        args.extend(support::file_args(entry));
        let (_, info) = report(&args, &[]);
        for m in info["modules"].as_array().unwrap() {
            if m["file"]["state"] == "verified" {
                recorded.insert(m["path"].as_str().unwrap().to_string());
            }
        }
    }
    let rewritten = [
        "/lib/libpython3.11.so.1.0",
        "/_ctypes.cpython-311-x86_64-linux-gnu.so",
    ];
    let mut to_dwz = Vec::new();
    for path in &recorded {
        let host = Path::new(path);
        let rel = path.trim_start_matches('/');
        link(host, &orig.join(rel));
        if rewritten.iter().any(|r| path.ends_with(r)) {
            let copy = dwz.join(rel);
            std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
            std::fs::copy(host, &copy).unwrap();
            to_dwz.push(copy);
        } else {
            link(host, &dwz.join(rel));
        }
    }
    assert_eq!(to_dwz.len(), 2, "libpython and _ctypes among {recorded:?}");
    let twin = base.join("twin.so");
    std::fs::copy(
        recorded.iter().find(|p| p.ends_with(rewritten[0])).unwrap(),
        &twin,
    )
    .unwrap();
    let name = "/usr/lib/debug/.dwz/pyenv-3.11.7.debug";
    let common = dwz.join(name.trim_start_matches('/'));
    std::fs::create_dir_all(common.parent().unwrap()).unwrap();
    // Both sysroots have the debug folder searched (the reports name it).
    std::fs::create_dir_all(orig.join("usr/lib/debug/.dwz")).unwrap();
    run(Command::new("dwz")
        .arg("-m")
        .arg(&common)
        .args(["-M", name])
        .args(&to_dwz)
        .arg(&twin));
    let mut problems = Vec::new();
    for file in &to_dwz {
        if section_size(file, ".gnu_debugaltlink").is_none() || !refers_to_alt(file) {
            problems.push(format!("{}: dwz moved nothing out", file.display()));
        }
    }
    eprintln!(
        "pyenv: the supplementary file holds {} DIEs",
        die_count(&common)
    );
    for file in &to_dwz {
        let original = orig.join(file.strip_prefix(&dwz).unwrap());
        problems.extend(same_call_sites(&original, file, &common));
    }
    for (s, entry) in entries.iter().enumerate() {
        for command in COMMANDS {
            let run_with = |root: &Path| {
                let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
                args.extend(["--sysroot".into(), root.display().to_string()]);
                args.push(entry["core"].as_str().unwrap().into());
                report(&args, &[(root, "ROOT")])
            };
            let (want_code, mut want) = run_with(&orig);
            let (code, mut got) = run_with(&dwz);
            let what = format!("pyenv: {} on {}", command[0], SCENARIOS[s]);
            if command[0] == "info" {
                take_supplementary(&mut want);
                let statuses = take_supplementary(&mut got);
                for (module, status) in statuses {
                    let expected =
                        module.starts_with("libpython") || module.starts_with("_ctypes.");
                    let found = status["state"] == "found"
                        && status["path"] == format!("ROOT{name}")
                        && status["via"] == "name";
                    if expected != found {
                        problems.push(format!("{what}: {module}: {status}"));
                    }
                }
            }
            if command[0] == "layout" && got["layout"]["source"]["kind"] != "dwarf" {
                problems.push(format!("{what}: the layout is not from DWARF"));
            }
            if code != want_code || got != want {
                problems.push(format!(
                    "{what}: exit {code} vs {want_code}; {}",
                    first_difference(&want, &got, "")
                ));
            }
        }
    }
    support::assert_no_problems(&problems);
}

#[test]
fn a_supplementary_file_found_nowhere_comes_from_debuginfod() {
    let Some(p) = prepared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    debug_files_only(p, &p.gnu, &files);
    // The server has the supplementary file only; the debug files are local.
    let served = dir.path().join("served");
    link(&p.gnu_sup(), &served.join("common.debug"));
    let sup_id = hex(&ElfImage::open(&p.gnu_sup()).unwrap().build_id().unwrap());
    let server =
        crate::debuginfod::Server::start_serving(&[&served], std::slice::from_ref(&sup_id));
    let cache = dir.path().join("cache");
    let env = [
        ("DEBUGINFOD_URLS", server.url.as_str()),
        ("DEBUGINFOD_CACHE_PATH", cache.to_str().unwrap()),
    ];
    let entry = &p.entries[0];
    let run = |command: &[&str]| -> Value {
        let args = args_with(command, &[&files], entry, &[]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stdout, stderr) = support::pymortem_with_env(&args, &env);
        assert!(code == 0 || code == 3, "{args:?}: exit {code}: {stderr}");
        let stdout = stdout.replace(&files.display().to_string(), "DEBUG-DIR");
        serde_json::from_str(&stdout).unwrap()
    };
    let threads = run(COMMANDS[0]);
    let (_, want) = &originals(p)[&(0, 0)];
    assert!(
        threads == *want,
        "threads with the supplementary file from debuginfod: {}",
        first_difference(want, &threads, "")
    );
    let mut info = run(COMMANDS[3]);
    let statuses = take_supplementary(&mut info);
    let python = &statuses["python3.11"];
    assert_eq!(python["state"], "found", "{python}");
    assert_eq!(python["via"], "debuginfod", "{python}");
    assert_eq!(python["build_id"], sup_id.as_str());
    assert!(
        Path::new(python["path"].as_str().unwrap()).starts_with(&cache),
        "{python}"
    );
}
