//! Layout extraction speed: reading the layout from libpython's DWARF (cold:
//! nothing cached, the file in the page cache) and from the on-disk layout
//! cache (warm). Run with `cargo bench --bench layout_timing [-- LIBPYTHON VERSION]`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pymortem::layout::{PythonVersion, cache, from_dwarf};
use pymortem::modules::{ElfImage, hex};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let home = std::env::var("HOME").unwrap_or_default();
    let lib = args.first().cloned().unwrap_or(format!(
        "{home}/.pyenv/versions/3.13.0/lib/libpython3.13.so.1.0"
    ));
    let version =
        PythonVersion::parse(args.get(1).map_or("3.13.0", String::as_str)).expect("X.Y.Z");
    let image = ElfImage::open(&PathBuf::from(&lib)).expect("an ELF file");
    let build_id = image.build_id().map(|b| hex(&b)).expect("a build-id");
    let runs = 30;
    let mut cold = Vec::new();
    let mut layout = None;
    for _ in 0..runs {
        // Each run maps the file anew, as a fresh process would.
        let image = ElfImage::open(&PathBuf::from(&lib)).unwrap();
        let t = Instant::now();
        let l = from_dwarf(
            &image,
            Some(build_id.clone()),
            (version.major, version.minor, version.micro),
        )
        .unwrap();
        cold.push(t.elapsed());
        layout = Some(l);
    }
    let layout = layout.unwrap();
    let dir = tempfile::tempdir().unwrap();
    cache::store(dir.path(), &build_id, &layout).unwrap();
    let mut warm = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let l = cache::load(dir.path(), &build_id, (version.major, version.minor)).expect("cached");
        warm.push(t.elapsed());
        assert_eq!(l.structs, layout.structs);
    }
    println!("layout of {lib} ({} structures)", layout.structs.len());
    println!(
        "  DWARF (no cache): median {:.2} ms over {runs} runs",
        median(cold).as_secs_f64() * 1e3
    );
    println!(
        "  cached:           median {:.3} ms over {runs} runs",
        median(warm).as_secs_f64() * 1e3
    );
}
