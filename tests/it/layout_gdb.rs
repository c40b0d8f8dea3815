//! Layouts read from DWARF against gdb's `ptype /o`, an independent oracle.
//!
//! For every pyenv interpreter in the sample-core manifest, `pymortem layout`
//! reads the structures from libpython's DWARF, and gdb is run once on the
//! same library to print each structure with `ptype /o`. Every field pymortem
//! reports for the structures below must sit at the offset and have the size
//! gdb prints, and every structure must have gdb's total size. Fields gdb
//! knows and pymortem does not report are fine.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Pyenv interpreters the sample cores are generated for.
const PYENV_INTERPRETERS: usize = 9;

/// Canonical structures checked, and from which versions they must be there.
#[derive(Clone, Copy)]
enum Need {
    Always,
    /// Required from this (major, minor) on; not checked before.
    Since(u32, u32),
    /// Checked when present up to this (major, minor); never required.
    OptionalUpTo(u32, u32),
}

const STRUCTS: &[(&str, Need)] = &[
    ("PyObject", Need::Always),
    ("PyVarObject", Need::Always),
    ("PyGC_Head", Need::Always),
    ("PyTupleObject", Need::Always),
    ("PyTypeObject", Need::Always),
    ("PyThreadState", Need::Always),
    ("_PyInterpreterFrame", Need::Since(3, 11)),
    ("PyFrameObject", Need::OptionalUpTo(3, 10)),
    ("PyCodeObject", Need::Always),
];

/// Canonical (structure, field) pairs pymortem must report for a version.
fn required_fields(version: (u32, u32)) -> Vec<(&'static str, &'static str)> {
    let mut required = vec![
        ("PyObject", "ob_type"),
        ("PyVarObject", "ob_size"),
        ("PyGC_Head", "gc_next"),
        ("PyTupleObject", "ob_item"),
        ("PyTypeObject", "tp_name"),
        ("PyTypeObject", "tp_flags"),
        ("PyThreadState", "next"),
        ("PyThreadState", "interp"),
        ("PyThreadState", "thread_id"),
        ("PyCodeObject", "co_filename"),
        ("PyCodeObject", "co_name"),
        ("PyCodeObject", "co_firstlineno"),
    ];
    if version <= (3, 10) {
        required.push(("PyThreadState", "frame"));
    }
    if ((3, 10)..=(3, 12)).contains(&version) {
        required.push(("PyThreadState", "cframe"));
    }
    if version >= (3, 13) {
        required.push(("PyThreadState", "current_frame"));
    }
    if version >= (3, 11) {
        required.push(("PyThreadState", "native_thread_id"));
        required.push(("_PyInterpreterFrame", "previous"));
        required.push(("_PyInterpreterFrame", "code"));
    }
    required
}

/// One member as gdb prints it.
#[derive(Debug, Clone, Copy)]
struct GdbMember {
    /// Byte offset from the start of the outermost structure.
    offset: u64,
    size: u64,
    /// Bitfields: (bit within the byte at `offset`, width in bits).
    bits: Option<(u64, u64)>,
}

/// A structure as gdb prints it: member paths (dotted for members of named
/// nested structures and unions; members of anonymous ones under their own
/// name) and the total size.
#[derive(Debug)]
struct GdbType {
    size: u64,
    members: BTreeMap<String, GdbMember>,
}

/// A structure or union being read: the outermost one or one nested inline.
struct Frame {
    offset: u64,
    /// The size printed on the line that opened it (0 for the outermost).
    size: u64,
    is_union: bool,
    members: Vec<(String, GdbMember)>,
    total: Option<u64>,
}

impl Frame {
    fn new(offset: u64, size: u64, opener: &str) -> Frame {
        Frame {
            offset,
            size,
            is_union: opener.trim_start_matches("const ").starts_with("union"),
            members: Vec::new(),
            total: None,
        }
    }
}

/// The member name declared by one line of `ptype` output, such as
/// `struct _ts *next;`, `PyObject *ob_item[1];`, `void (*on_delete)(void *);`
/// or `unsigned int kind : 3;`. Returns (name, bit width).
fn declared_name(decl: &str) -> Result<(String, Option<u64>), String> {
    let mut d = decl.trim().trim_end_matches(';').trim_end();
    let mut width = None;
    if let Some((left, right)) = d.rsplit_once(" : ")
        && let Ok(w) = right.trim().parse::<u64>()
    {
        width = Some(w);
        d = left.trim_end();
    }
    if let Some(i) = d.find("(*") {
        let rest = &d[i + 2..];
        d = &rest[..rest.find(')').unwrap_or(rest.len())];
    }
    let mut d = d.trim();
    while d.ends_with(']') {
        match d.rfind('[') {
            Some(i) => d = d[..i].trim_end(),
            None => break,
        }
    }
    let name = d
        .rsplit(|c: char| c.is_whitespace() || c == '*')
        .next()
        .unwrap_or("");
    if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric()) {
        return Err(format!("no member name in {decl:?}"));
    }
    Ok((name.to_string(), width))
}

/// Parse one `ptype /o` output.
///
/// gdb 13 prints every member's offset from the start of the outermost
/// structure, nested members included; members of a union print no offset
/// and share the union's. Members of a structure printed inline as the
/// element type of an array (`} calls[32];`) show offsets relative to the
/// element, so only the array itself is kept.
fn parse_ptype(text: &str) -> Result<GdbType, String> {
    let mut stack: Vec<Frame> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let (comment, decl) = match trimmed.strip_prefix("/*") {
            Some(rest) => {
                let end = rest
                    .find("*/")
                    .ok_or_else(|| format!("unterminated comment in {line:?}"))?;
                (Some(rest[..end].trim()), rest[end + 2..].trim())
            }
            None => (None, trimmed),
        };
        if let Some(kind) = decl.strip_prefix("type = ") {
            if !stack.is_empty() {
                return Err(format!("second type in one output: {line:?}"));
            }
            if !decl.ends_with('{') || !(kind.contains("struct") || kind.contains("union")) {
                return Err(format!("not a structure or union: {line:?}"));
            }
            stack.push(Frame::new(0, 0, kind));
            continue;
        }
        if stack.is_empty() {
            return Err(format!("text before the type: {line:?}"));
        }
        if let Some(comment) = comment {
            if comment.starts_with("XXX") {
                continue; // holes and padding
            }
            if let Some(total) = comment.strip_prefix("total size (bytes):") {
                let total = total.trim().parse().map_err(|e| format!("{line:?}: {e}"))?;
                stack.last_mut().unwrap().total = Some(total);
                continue;
            }
            let (offset_text, size_text) = match comment.split_once('|') {
                Some((o, s)) => (Some(o.trim()), s.trim()),
                None => (None, comment),
            };
            let size: u64 = size_text
                .parse()
                .map_err(|e| format!("size in {line:?}: {e}"))?;
            let top = stack.last().unwrap();
            let (offset, bit) = match offset_text {
                Some(o) => {
                    let (byte, bit) = match o.split_once(':') {
                        Some((byte, bit)) => (byte.trim(), Some(bit.trim())),
                        None => (o, None),
                    };
                    let byte: u64 = byte
                        .parse()
                        .map_err(|e| format!("offset in {line:?}: {e}"))?;
                    let bit: Option<u64> = bit
                        .map(|b| b.parse().map_err(|e| format!("bit in {line:?}: {e}")))
                        .transpose()?;
                    (byte, bit)
                }
                None if top.is_union => (top.offset, None),
                None => return Err(format!("no offset outside a union: {line:?}")),
            };
            if decl.ends_with('{') {
                stack.push(Frame::new(offset, size, decl));
                continue;
            }
            let (name, width) = declared_name(decl)?;
            let bits = match (bit, width) {
                (Some(bit), Some(width)) => Some((bit, width)),
                (None, Some(width)) => Some((0, width)),
                (Some(_), None) => return Err(format!("bit offset without width: {line:?}")),
                (None, None) => None,
            };
            stack
                .last_mut()
                .unwrap()
                .members
                .push((name, GdbMember { offset, size, bits }));
            continue;
        }
        let Some(rest) = decl.strip_prefix('}') else {
            return Err(format!("unexpected line: {line:?}"));
        };
        let frame = stack.pop().unwrap();
        let name = rest.trim().trim_end_matches(';').trim();
        let Some(parent) = stack.last_mut() else {
            // The outermost structure ends.
            let size = frame
                .total
                .ok_or_else(|| "no total size for the structure".to_string())?;
            let mut members = BTreeMap::new();
            for (path, member) in frame.members {
                if members.insert(path.clone(), member).is_some() {
                    return Err(format!("member {path} printed twice"));
                }
            }
            return Ok(GdbType { size, members });
        };
        if name.is_empty() {
            // Anonymous: its members are named as members of the parent.
            parent.members.extend(frame.members);
            continue;
        }
        let (name, _) = declared_name(name)?;
        parent.members.push((
            name.clone(),
            GdbMember {
                offset: frame.offset,
                size: frame.size,
                bits: None,
            },
        ));
        if !rest.contains('[') {
            for (path, member) in frame.members {
                parent.members.push((format!("{name}.{path}"), member));
            }
        }
    }
    Err(match stack.is_empty() {
        true => "no type printed".to_string(),
        false => "output ends inside the structure".to_string(),
    })
}

/// Run gdb once on `library`, printing each of `c_names` with `ptype /o`.
/// A name is tried as a typedef first, then as a struct and a union tag.
fn gdb_types(
    library: &str,
    c_names: &BTreeSet<String>,
) -> Result<BTreeMap<String, Result<GdbType, String>>, String> {
    const MARK: &str = "@@@pymortem-ptype ";
    let mut args: Vec<String> = [
        "-batch",
        "-nx",
        "-iex",
        "set auto-load off",
        "-iex",
        "set debuginfod enabled off",
        "-ex",
        "set max-value-size unlimited",
        "-ex",
        "set width unlimited",
        "-ex",
        "set print type hex off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let forms = |name: &str| {
        [
            name.to_string(),
            format!("struct {name}"),
            format!("union {name}"),
        ]
    };
    for name in c_names {
        for form in forms(name) {
            args.push("-ex".into());
            args.push(format!("echo {MARK}{form}\\n"));
            args.push("-ex".into());
            args.push(format!("ptype /o {form}"));
        }
    }
    args.push(library.to_string());
    let out = Command::new("gdb")
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run gdb (the oracle this test needs): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut printed: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(form) = line.strip_prefix(MARK) {
            current = Some(form.to_string());
            printed.insert(form.to_string(), String::new());
        } else if let Some(form) = &current {
            let text = printed.get_mut(form).unwrap();
            text.push_str(line);
            text.push('\n');
        }
    }
    // In batch mode gdb exits 1 when the last command failed, as the
    // struct and union forms of a typedef name do: judge by what it printed.
    let every_form = c_names.iter().flat_map(|n| forms(n));
    if let Some(missing) = every_form.into_iter().find(|f| !printed.contains_key(f)) {
        return Err(format!(
            "gdb ({}) stopped before ptype /o {missing}: {stderr}",
            out.status
        ));
    }
    let mut types = BTreeMap::new();
    for name in c_names {
        let text = forms(name).into_iter().find_map(|form| {
            printed
                .get(&form)
                .filter(|t| t.contains("type = "))
                .cloned()
        });
        let parsed = match text {
            Some(text) => parse_ptype(&text).map_err(|e| format!("{e}\n{text}")),
            None => Err(format!(
                "gdb knows no type {name} (tried typedef, struct and union); gdb said:\n{stderr}"
            )),
        };
        types.insert(name.clone(), parsed);
    }
    Ok(types)
}

fn version_of(text: &str) -> (u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

/// Everything wrong for one interpreter, and how many fields were compared.
fn check_interpreter(interp: &str, version_text: &str, library: &str) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let version = version_of(version_text);
    let (code, stdout, stderr) = support::pymortem(&[
        "layout",
        "--json",
        "--no-cache",
        "--python-version",
        version_text,
        library,
    ]);
    if code != 0 {
        return (
            vec![format!("{interp}: pymortem layout exited {code}: {stderr}")],
            0,
        );
    }
    let report: Value = match serde_json::from_str(&stdout) {
        Ok(v) => v,
        Err(e) => return (vec![format!("{interp}: layout JSON: {e}")], 0),
    };
    let structs = &report["layout"]["structs"];

    for (name, field) in required_fields(version) {
        if structs[name]["fields"][field].is_null() {
            problems.push(format!(
                "{interp}: pymortem reports no {name}.{field}, which {version_text} must have"
            ));
        }
    }

    // The structures to compare, with the C type each was read from.
    let mut checked: Vec<(&str, &Value, String)> = Vec::new();
    for &(name, need) in STRUCTS {
        let wanted = match need {
            Need::Always => true,
            Need::Since(major, minor) => version >= (major, minor),
            Need::OptionalUpTo(major, minor) => version <= (major, minor),
        };
        let layout = &structs[name];
        if layout.is_null() {
            if matches!(need, Need::Always | Need::Since(..)) && wanted {
                problems.push(format!("{interp}: pymortem reports no structure {name}"));
            }
            continue;
        }
        if !wanted {
            continue;
        }
        match layout["c_name"].as_str() {
            Some(c_name) => checked.push((name, layout, c_name.to_string())),
            None => problems.push(format!("{interp}: {name} has no c_name in the JSON")),
        }
    }

    let c_names: BTreeSet<String> = checked.iter().map(|(_, _, c)| c.clone()).collect();
    let types = match gdb_types(library, &c_names) {
        Ok(types) => types,
        Err(e) => {
            problems.push(format!("{interp}: {e}"));
            return (problems, 0);
        }
    };

    let mut compared = 0;
    for (name, layout, c_name) in checked {
        let gdb = match &types[&c_name] {
            Ok(gdb) => gdb,
            Err(e) => {
                problems.push(format!("{interp}: {name} (C {c_name}): {e}"));
                continue;
            }
        };
        let size = layout["size"].as_u64();
        if size != Some(gdb.size) {
            problems.push(format!(
                "{interp}: {name} (C {c_name}) size: pymortem {size:?}, gdb {}",
                gdb.size
            ));
        }
        let Some(fields) = layout["fields"].as_object() else {
            problems.push(format!("{interp}: {name} has no fields object"));
            continue;
        };
        for (field, f) in fields {
            compared += 1;
            let what = format!("{interp}: {name}.{field}");
            let Some(c_path) = f["c_path"].as_str() else {
                problems.push(format!("{what}: no c_path in the JSON"));
                continue;
            };
            let Some(member) = gdb.members.get(c_path) else {
                problems.push(format!(
                    "{what}: pymortem reports C member {c_path:?} (offset {}, size {}), \
                     gdb's ptype /o {c_name} has no such member",
                    f["offset"], f["size"]
                ));
                continue;
            };
            let offset = f["offset"].as_u64();
            let size = f["size"].as_u64();
            let bit_offset = f["bit_offset"].as_u64();
            let bit_size = f["bit_size"].as_u64();
            match member.bits {
                None => {
                    if offset != Some(member.offset) || size != Some(member.size) {
                        problems.push(format!(
                            "{what} ({c_name}.{c_path}): pymortem offset {} size {}, \
                             gdb offset {} size {}",
                            f["offset"], f["size"], member.offset, member.size
                        ));
                    }
                    if bit_offset.is_some() || bit_size.is_some() {
                        problems.push(format!(
                            "{what} ({c_name}.{c_path}): pymortem says bitfield \
                             (bit_offset {}, bit_size {}), gdb says not a bitfield",
                            f["bit_offset"], f["bit_size"]
                        ));
                    }
                }
                Some((bit, width)) => {
                    // gdb prints the byte holding the first bit and the
                    // storage unit's size; DWARF has the unit's offset.
                    let gdb_bit_offset = member.offset * 8 + bit;
                    let unit_holds_it = offset.zip(size).is_some_and(|(o, s)| {
                        o <= member.offset && gdb_bit_offset + width <= (o + s) * 8
                    });
                    if bit_offset != Some(gdb_bit_offset)
                        || bit_size != Some(width)
                        || size != Some(member.size)
                        || !unit_holds_it
                    {
                        problems.push(format!(
                            "{what} ({c_name}.{c_path}): pymortem offset {} size {} \
                             bit_offset {} bit_size {}, gdb byte {}: bit {} unit size {} \
                             width {width} (bit offset {gdb_bit_offset})",
                            f["offset"],
                            f["size"],
                            f["bit_offset"],
                            f["bit_size"],
                            member.offset,
                            bit,
                            member.size
                        ));
                    }
                }
            }
        }
    }
    (problems, compared)
}

#[test]
fn dwarf_layouts_match_gdb_ptype_offsets() {
    if support::matrix_missing() {
        return;
    }
    let start = std::time::Instant::now();
    let mut interpreters: BTreeMap<String, (String, String)> = BTreeMap::new();
    for entry in support::manifest() {
        let Some(interp) = entry["interp"].as_str() else {
            continue;
        };
        if !interp.starts_with("pyenv-") {
            continue;
        }
        let version = entry["python_version"]
            .as_str()
            .unwrap_or_else(|| panic!("{interp}: no python_version in the manifest"));
        let library = entry["libpython"]
            .as_str()
            .unwrap_or_else(|| panic!("{interp}: no libpython in the manifest"));
        interpreters.insert(
            interp.to_string(),
            (version.to_string(), library.to_string()),
        );
    }
    assert_eq!(
        interpreters.len(),
        PYENV_INTERPRETERS,
        "pyenv interpreters in the manifest: {:?}",
        interpreters.keys().collect::<Vec<_>>()
    );

    let results: Vec<(String, Vec<String>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = interpreters
            .iter()
            .map(|(interp, (version, library))| {
                scope.spawn(move || {
                    let (problems, compared) = check_interpreter(interp, version, library);
                    (interp.clone(), problems, compared)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut problems = Vec::new();
    for (interp, found, compared) in results {
        eprintln!(
            "{interp}: {compared} fields compared with gdb, {} problems",
            found.len()
        );
        problems.extend(found);
    }
    eprintln!("took {:.1?}", start.elapsed());
    assert!(
        problems.is_empty(),
        "{} disagreements between pymortem's DWARF layouts and gdb's ptype /o:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn ptype_parser_reads_nested_unions_bitfields_and_arrays() {
    // Shapes seen in real gdb 13 output (CPython 2.7 PyGC_Head, 3.12+
    // PyObject, 3.13 PyThreadState, 3.11 PyInterpreterState).
    let text = "\
/* offset      |    size */  type = struct _ts {
/*      0      |       8 */    union {
/*                     8 */        Py_ssize_t ob_refcnt;
/*                     8 */        uint32_t ob_refcnt_split[2];

                                   /* total size (bytes):    8 */
                               };
/*      8      |       8 */    void (*on_delete)(void *);
/*     16      |       4 */    struct {
/*     16: 0   |       4 */        unsigned int initialized : 1;
/*     17: 0   |       4 */        unsigned int finalized : 1;
/* XXX  7-bit padding    */

                                   /* total size (bytes):    4 */
                               } _status;
/*     24      |      32 */    struct pythreads {
/*     24      |       8 */        uint64_t next_unique_id;
/*     32      |      24 */        union {
/*                    24 */            struct {
/*     32      |       8 */                union _gc_head *gc_next;
/*     40      |       8 */                union _gc_head *gc_prev;

                                           /* total size (bytes):   16 */
                                       } gc;
/*                     8 */            double dummy;

                                           /* total size (bytes):   24 */
                                       } u;

                                   /* total size (bytes):   32 */
                               } threads;
/*     56      |      16 */    struct {
/*      0      |       8 */        int (*func)(void *);
/*      8      |       8 */        void *arg;
                               } calls[1];
/*     72      |       8 */    PyObject *ob_item[1];

                               /* total size (bytes):   80 */
                             }
";
    let t = parse_ptype(text).unwrap();
    assert_eq!(t.size, 80);
    let at = |path: &str| {
        let m = t.members.get(path).unwrap_or_else(|| panic!("{path}"));
        (m.offset, m.size, m.bits)
    };
    assert_eq!(at("ob_refcnt"), (0, 8, None));
    assert_eq!(at("ob_refcnt_split"), (0, 8, None));
    assert_eq!(at("on_delete"), (8, 8, None));
    assert_eq!(at("_status"), (16, 4, None));
    assert_eq!(at("_status.finalized"), (17, 4, Some((0, 1))));
    assert_eq!(at("threads.u.gc.gc_prev"), (40, 8, None));
    assert_eq!(at("threads.u.dummy"), (32, 8, None));
    assert_eq!(at("threads.u"), (32, 24, None));
    assert_eq!(at("calls"), (56, 16, None));
    assert!(!t.members.contains_key("calls.arg"));
    assert_eq!(at("ob_item"), (72, 8, None));
}
