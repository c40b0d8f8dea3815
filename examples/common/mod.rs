//! What every example takes: cores and where their files are.

use std::path::PathBuf;

// Where the files a core names are found. (A plain comment: a doc comment
// here would become the --help text of every example that has none.)
#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// Look up every path the core names under this folder.
    #[arg(long)]
    pub sysroot: Option<PathBuf>,
    /// A folder of split debug files (with a .build-id tree); repeatable.
    #[arg(long = "debug-dir")]
    pub debug_dirs: Vec<PathBuf>,
}

impl FileArgs {
    /// The library's open options.
    pub fn options(&self) -> pymortem::Options {
        let mut options = pymortem::Options::default();
        if let Some(root) = &self.sysroot {
            options = options.sysroot(root);
        }
        for dir in &self.debug_dirs {
            options = options.debug_dir(dir);
        }
        options
    }
}

/// Print `text` to stdout. A closed pipe (`| head`) ends the program
/// quietly; any other write error ends it with status 2.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cannot write the output: {e}");
        std::process::exit(2);
    }
}
