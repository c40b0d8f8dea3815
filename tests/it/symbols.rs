//! Symbols on real interpreters: sized lookups and file-scoped statics.

use crate::support;

use pymortem::Process;

fn open(interp: &str) -> Process {
    let manifest = support::manifest();
    let entry = manifest
        .iter()
        .find(|e| e["interp"] == interp && e["scenario"] == "threads" && e["kind"] == "kernel")
        .unwrap_or_else(|| panic!("no {interp} threads core"));
    support::open(entry)
}

#[test]
fn tuple_and_float_free_lists_stay_apart() {
    if support::matrix_missing() {
        return;
    }
    // CPython 3.8: tupleobject.c has `static PyTupleObject *free_list[PyTuple_MAXSAVESIZE]`
    // (20 pointers) and floatobject.c a single `static PyFloatObject *free_list`.
    let process = open("pyenv-3.8.18");
    let libpython = process
        .modules()
        .modules()
        .iter()
        .find(|m| m.name().starts_with("libpython3.8"))
        .unwrap();
    let symbols = libpython.symbols();
    let tuple = symbols
        .find("free_list", Some("tupleobject.c"))
        .expect("tuple free_list");
    let float = symbols
        .find("free_list", Some("floatobject.c"))
        .expect("float free_list");
    assert_ne!(tuple.address, float.address);
    assert_eq!(tuple.size, 20 * 8);
    assert_eq!(float.size, 8);
    // Sized lookups: inside the array resolves to it, one past the end does not.
    assert_eq!(
        symbols.lookup(tuple.address + 19 * 8).map(|s| s.address),
        Some(tuple.address)
    );
    assert_ne!(
        symbols.lookup(tuple.address + 20 * 8).map(|s| s.address),
        Some(tuple.address)
    );
}

#[test]
fn stripped_debian_interpreter_gets_symbols_from_its_debug_file() {
    if support::matrix_missing() {
        return;
    }
    let process = open("debian-3.11");
    let exe = process.modules().executable().expect("executable");
    assert!(
        !exe.file().unwrap().has_symtab(),
        "/usr/bin/python3.11 is stripped"
    );
    // Exported in .dynsym of the stripped binary.
    assert!(exe.symbol_address("Py_Version", None).is_some());
    // Static functions exist only in the split debug file's .symtab.
    let symbols = exe.symbols();
    // Debian builds with LTO, which renames statics.
    let tuple_dealloc = symbols
        .find_static("tupledealloc", None)
        .expect("local symbol from the debug file");
    assert!(tuple_dealloc.local);
    assert!(tuple_dealloc.name.starts_with("tupledealloc"));
    let inside = symbols
        .lookup(tuple_dealloc.address + 1)
        .expect("sized lookup");
    assert_eq!(inside.address, tuple_dealloc.address);
    let python = process.python().unwrap();
    assert_eq!((python.version.major, python.version.minor), (3, 11));
}
