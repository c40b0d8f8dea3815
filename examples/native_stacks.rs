//! Prints each thread's native stack (a development aid until `threads --native`).
fn main() {
    let path = std::env::args().nth(1).expect("CORE");
    let mut options = pymortem::Options::default();
    if let Some(root) = std::env::args().nth(2) {
        options = options.sysroot(root);
    }
    let process = pymortem::Process::open(&path, &options).unwrap();
    for t in process.threads() {
        let stack = pymortem::unwind::unwind_thread(&process, t.lwp).unwrap();
        println!("Thread {}: {:?}", t.lwp, stack.stop);
        for (i, f) in stack.frames.iter().enumerate() {
            println!(
                "  #{i} {:#x} {:?} {} in {}{}",
                f.address.address(),
                f.trust,
                f.function.as_deref().unwrap_or("??"),
                f.module.as_deref().unwrap_or("?"),
                if f.signal_frame { " [signal]" } else { "" }
            );
        }
    }
}
