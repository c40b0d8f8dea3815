//! `pymortem triage --watch DIR --db URL`: stay running on a host and
//! record each new core once it is whole.
//!
//! When is a core whole? systemd-coredump writes a hidden temporary file
//! and renames it (`IN_MOVED_TO`); other writers close it
//! (`IN_CLOSE_WRITE`). A file written to (`IN_MODIFY`) and not yet closed is
//! waited for however long its writer pauses. Every file must also keep its
//! size and modification time for the settle time, so a file whose events
//! were missed (a full event queue, a rescan) is taken only when it stopped
//! changing. Hidden files (`.#core…`) are left alone. The folder is walked
//! again every `--rescan` seconds, and whenever the kernel's event queue
//! overflowed, so nothing is lost.
//!
//! Memory stays bounded: the pending set holds only files seen but not yet
//! recorded (at most [`MAX_PENDING`]; beyond, the next rescan finds them),
//! and each batch's outcomes are printed and dropped.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};
use serde_json::json;

use pymortem::crashdb::{FileStamp, Ingest, Outcome, stamp};
use pymortem::triage::{TriageOptions, classify_inputs, triage_core, walk_inputs};

use super::escape::{esc, esc_path};
use super::{EXIT_OK, fail};

/// The most files waiting to settle; more are found by the next rescan.
pub const MAX_PENDING: usize = 10_000;

/// How long a wait for events lasts at most: the pending files are looked
/// at again after it.
const TICK: Duration = Duration::from_millis(250);

/// What watching needs from the `triage` arguments.
pub(crate) struct WatchSettings {
    pub dir: PathBuf,
    pub settle: Duration,
    pub rescan: Duration,
    pub json: bool,
    pub jobs: usize,
}

/// A file seen but not yet recorded.
#[derive(Debug, Clone, Copy)]
struct Pending {
    stamp: Option<FileStamp>,
    /// When its stamp was last seen to change.
    changed: Instant,
    /// Written to and not closed since: its writer is not done.
    open_for_write: bool,
}

/// Watch `settings.dir`, recording into `db`, until stdout is closed or the
/// process is stopped.
pub(crate) fn watch(settings: &WatchSettings, mut db: Ingest, options: &TriageOptions) -> i32 {
    let dir = &settings.dir;
    if !dir.is_dir() {
        return fail(&format!(
            "{}: --watch needs a folder (the one systemd-coredump or your core_pattern writes to)",
            dir.display()
        ));
    }
    let mut inotify = match Inotify::init() {
        Ok(i) => i,
        Err(e) => return fail(&format!("cannot start inotify: {e}")),
    };
    let mask = WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MODIFY
        | WatchMask::CREATE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF;
    if let Err(e) = inotify.watches().add(dir, mask) {
        return fail(&format!(
            "{}: cannot watch it: {e} (too many inotify watches? see /proc/sys/fs/inotify/max_user_watches)",
            dir.display()
        ));
    }
    let pool = match rayon::ThreadPoolBuilder::new()
        .num_threads(settings.jobs)
        .build()
    {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot start worker threads: {e}")),
    };
    let mut pending: HashMap<PathBuf, Pending> = HashMap::new();
    let mut last_scan: Option<Instant> = None;
    let mut buffer = vec![0u8; 64 * 1024];
    let _ = writeln!(
        std::io::stderr(),
        "pymortem: watching {} (recording into {})",
        esc_path(dir),
        esc(&db.summary().location)
    );
    loop {
        let now = Instant::now();
        if last_scan.is_none_or(|t| now.duration_since(t) >= settings.rescan) {
            scan(dir, &mut pending, now);
            last_scan = Some(now);
        }
        if wait_readable(inotify.as_raw_fd(), TICK) {
            let events = match inotify.read_events(&mut buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return fail(&format!("{}: inotify: {e}", dir.display())),
            };
            for event in events {
                if event.mask.contains(EventMask::Q_OVERFLOW) {
                    last_scan = None;
                    continue;
                }
                if event
                    .mask
                    .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                {
                    return fail(&format!(
                        "{}: the watched folder was removed or moved",
                        dir.display()
                    ));
                }
                let Some(name) = event.name else { continue };
                if name.as_encoded_bytes().starts_with(b".") {
                    continue;
                }
                let path = dir.join(name);
                // Written to and not closed: wait for the close. (A file only
                // created, a hard link say, settles by its stamp.)
                let writing = event.mask.contains(EventMask::MODIFY);
                note(&mut pending, path, writing, Instant::now());
            }
        }
        let ready = settled(&mut pending, settings.settle, Instant::now());
        if ready.is_empty() {
            continue;
        }
        match record_batch(&mut db, &pool, options, ready) {
            Ok(outcomes) => {
                if !print_outcomes(&outcomes, settings.json) {
                    // stdout closed: nobody reads us any more.
                    return EXIT_OK;
                }
            }
            Err(message) => return fail(&message),
        }
        db.clear_batch();
    }
}

/// Wait until `fd` is readable or `timeout` passes.
fn wait_readable(fd: std::os::unix::io::RawFd, timeout: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one pollfd, owned here, for the duration of the call.
    let n = unsafe { libc::poll(&mut poll, 1, ms) };
    n > 0 && poll.revents & libc::POLLIN != 0
}

/// Every regular, visible file under `dir` not pending yet becomes pending.
fn scan(dir: &Path, pending: &mut HashMap<PathBuf, Pending>, now: Instant) {
    let (files, _) = walk_inputs(&[dir.to_path_buf()]);
    for path in files {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.as_encoded_bytes().starts_with(b"."));
        if !hidden && !pending.contains_key(&path) && pending.len() < MAX_PENDING {
            pending.insert(
                path.clone(),
                Pending {
                    stamp: stamp(&path).ok(),
                    changed: now,
                    open_for_write: false,
                },
            );
        }
    }
}

/// An event on `path`: written to (not yet closed), or closed / moved in.
fn note(pending: &mut HashMap<PathBuf, Pending>, path: PathBuf, writing: bool, now: Instant) {
    if pending.len() >= MAX_PENDING && !pending.contains_key(&path) {
        return;
    }
    let entry = pending.entry(path.clone()).or_insert(Pending {
        stamp: None,
        changed: now,
        open_for_write: writing,
    });
    entry.open_for_write = writing;
    entry.stamp = stamp(&path).ok();
    entry.changed = now;
}

/// The pending files whose writers are done and whose stamps held for
/// `settle`; they leave the pending set. Files gone are forgotten.
fn settled(
    pending: &mut HashMap<PathBuf, Pending>,
    settle: Duration,
    now: Instant,
) -> Vec<PathBuf> {
    let mut ready = Vec::new();
    pending.retain(|path, p| {
        let current = match stamp(path) {
            Ok(s) => Some(s),
            Err(_) => return false,
        };
        if current != p.stamp {
            p.stamp = current;
            p.changed = now;
            return true;
        }
        if !p.open_for_write && now.duration_since(p.changed) >= settle {
            ready.push(path.clone());
            return false;
        }
        true
    });
    ready.sort();
    ready
}

/// Record `files`: those recorded before (same stamp, same content) are
/// linked or skipped, the others read.
fn record_batch(
    db: &mut Ingest,
    pool: &rayon::ThreadPool,
    options: &TriageOptions,
    files: Vec<PathBuf>,
) -> Result<Vec<Outcome>, String> {
    let files = db.drop_recorded(files).map_err(|e| e.to_string())?;
    let (cores, _not_cores) = classify_inputs(files);
    let cores = pool
        .install(|| db.drop_recorded_contents(cores))
        .map_err(|e| e.to_string())?;
    db.read_and_record(pool, &cores, |path: &PathBuf| {
        (
            path.clone(),
            triage_core(path, options).map_err(pymortem::crashdb::UnreadableCore::from),
        )
    })
    .map_err(|e| e.to_string())
}

/// One line per core read; false when stdout is closed.
fn print_outcomes(outcomes: &[Outcome], json: bool) -> bool {
    let mut out = String::new();
    for (path, outcome) in outcomes {
        if json {
            let line = match outcome {
                Ok(core) => serde_json::to_value(core).unwrap_or_default(),
                Err(e) => json!({"path": path, "error": e}),
            };
            out.push_str(&format!("{line}\n"));
        } else {
            let time = pymortem::triage::utc_text(pymortem::crashdb::unix_now());
            match outcome {
                Ok(core) => out.push_str(&format!(
                    "{time} recorded {}: {} {}\n",
                    esc_path(path),
                    core.signature,
                    esc(&pymortem::triage::signature::crash_kind(
                        core.fatal_error.as_deref(),
                        core.signal.as_deref()
                    ))
                )),
                Err(e) => out.push_str(&format!(
                    "{time} recorded {} as unreadable: {}\n",
                    esc_path(path),
                    esc(e)
                )),
            }
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(super::escape::terminal_text(&out).as_bytes())
        .and_then(|()| stdout.flush())
        .is_ok()
}
