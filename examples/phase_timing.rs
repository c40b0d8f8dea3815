//! Times each phase of `check` on one core (a development aid).
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).expect("CORE");
    let t = Instant::now();
    let process = pymortem::Process::open(&path, &pymortem::Options::default()).unwrap();
    eprintln!("open+modules+version {:?}", t.elapsed());
    let t = Instant::now();
    let state = pymortem::python::python_state(&process, &Default::default()).unwrap();
    eprintln!("python state {:?}", t.elapsed());
    let t = Instant::now();
    let result = pymortem::forensics::check(&process, &state);
    eprintln!(
        "check {:?} ({} objects, {} findings)",
        t.elapsed(),
        result.gc_objects,
        result.findings.len()
    );
}
