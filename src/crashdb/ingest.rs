//! Recording a batch of cores: what `triage --db`, `triage --watch` and the
//! Python package's distributed triage share. The caller reads the cores
//! (in its own threads or on its own machines); this decides which need
//! reading and records what was read.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{
    CrashDbError, CrashFacts, CrashStore, FileStamp, Record, Recorded, content_hash, open_store,
    regroup, stamp,
};
use crate::triage::CoreTriage;

/// The most results recorded in one transaction.
pub const RECORD_BATCH: usize = 64;

/// Why a core could not be read, as the error said it (the error itself
/// is not kept: outcomes are cloned into the database's batches).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(transparent)]
#[error("{0}")]
pub struct UnreadableCore(pub String);

impl UnreadableCore {
    /// The error's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for UnreadableCore {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<crate::Error> for UnreadableCore {
    fn from(e: crate::Error) -> UnreadableCore {
        UnreadableCore(e.to_string())
    }
}

/// One core read: its triage, or why it could not be read.
pub type Outcome = (PathBuf, Result<CoreTriage, UnreadableCore>);

/// What recording did to the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    /// The database's file or redacted URL.
    pub location: String,
    /// Its schema version.
    pub schema_version: u32,
    /// Crashes recorded for the first time.
    pub new_crashes: usize,
    /// Of those, cores that could not be read.
    pub unreadable: usize,
    /// New paths of crashes recorded before (copies, renamed files).
    pub new_paths: usize,
    /// Paths recorded before with the same size and time: not read.
    pub already_recorded: usize,
    /// Crashes given the current signature from their stored frames.
    pub regrouped: usize,
    /// Crashes whose stored frames do not suffice for it.
    pub kept: usize,
}

impl IngestSummary {
    /// The `database` object of a recording run's JSON summary.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.location,
            "schema_version": self.schema_version,
            "new_crashes": self.new_crashes,
            "unreadable": self.unreadable,
            "new_paths": self.new_paths,
            "already_recorded": self.already_recorded,
            "regrouped": self.regrouped,
        })
    }
}

/// A recording session on one database.
pub struct Ingest {
    store: Box<dyn CrashStore>,
    host: Option<String>,
    summary: IngestSummary,
    /// Each file's stamp, taken before it was read.
    stamps: HashMap<PathBuf, FileStamp>,
    /// Each core's content hash (`None`: it could not be read whole).
    hashes: HashMap<PathBuf, Option<String>>,
    /// Copies of cores read in this batch: linked once those are recorded.
    copies: Vec<PathBuf>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ingest({})", self.summary.location)
    }
}

impl Ingest {
    /// Open (or create) the database `url` names (see [`open_store`]),
    /// migrate it, and regroup the crashes recorded under an older
    /// signature algorithm. `host` is recorded with every crash.
    pub fn open(url: &str, host: Option<String>) -> Result<Ingest, CrashDbError> {
        Self::with_store(open_store(url, true)?, host)
    }

    /// Record into an open store.
    pub fn with_store(
        mut store: Box<dyn CrashStore>,
        host: Option<String>,
    ) -> Result<Ingest, CrashDbError> {
        let regrouped = regroup(store.as_mut())?;
        let schema_version = store.schema_version()?;
        Ok(Ingest {
            summary: IngestSummary {
                location: store.location(),
                schema_version,
                regrouped: regrouped.regrouped,
                kept: regrouped.kept,
                ..IngestSummary::default()
            },
            store,
            host,
            stamps: HashMap::new(),
            hashes: HashMap::new(),
            copies: Vec::new(),
        })
    }

    /// What was recorded so far.
    pub fn summary(&self) -> &IngestSummary {
        &self.summary
    }

    /// The store, to query it.
    pub fn store(&mut self) -> &mut dyn CrashStore {
        self.store.as_mut()
    }

    /// Forget the batch's stamps and hashes (a long-running recorder calls
    /// it after each batch, to stay bounded in memory).
    pub fn clear_batch(&mut self) {
        self.stamps.clear();
        self.hashes.clear();
        self.copies.clear();
    }

    /// The files not recorded with their current size and modification
    /// time; the others are counted, never opened. Paths are made absolute
    /// (not resolved: a symlink is its own path), so that runs from other
    /// folders find them and the report links to them.
    pub fn drop_recorded(&mut self, files: Vec<PathBuf>) -> Result<Vec<PathBuf>, CrashDbError> {
        let mut pending = Vec::with_capacity(files.len());
        for path in files {
            let path = std::path::absolute(&path).unwrap_or(path);
            // A file that cannot be looked at is read anyway: reading it says why.
            let Ok(now) = stamp(&path) else {
                pending.push(path);
                continue;
            };
            if self.store.path_stamp(&path)? == Some(now) {
                self.summary.already_recorded += 1;
            } else {
                self.stamps.insert(path.clone(), now);
                pending.push(path);
            }
        }
        Ok(pending)
    }

    /// The cores to read: each one's content is hashed (in the current
    /// rayon pool); a core whose content is recorded is linked to its crash
    /// now, and a second copy within the batch once the first is recorded.
    /// A core that cannot be hashed is read, to say why.
    pub fn drop_recorded_contents(
        &mut self,
        cores: Vec<PathBuf>,
    ) -> Result<Vec<PathBuf>, CrashDbError> {
        let hashed: Vec<(PathBuf, Option<String>)> = cores
            .into_par_iter()
            .map(|path| {
                let hash = content_hash(&path).ok();
                (path, hash)
            })
            .collect();
        let mut to_read = Vec::new();
        let mut linked = Vec::new();
        let mut first_of: HashSet<String> = HashSet::new();
        for (path, hash) in hashed {
            match &hash {
                Some(h) if self.store.has_content(h)? => linked.push(path.clone()),
                Some(h) if !first_of.insert(h.clone()) => self.copies.push(path.clone()),
                _ => to_read.push(path.clone()),
            }
            self.hashes.insert(path, hash);
        }
        let records: Vec<Record> = linked.iter().map(|p| self.link(p)).collect();
        self.write(&records)?;
        Ok(to_read)
    }

    fn file_stamp(&self, path: &Path) -> FileStamp {
        self.stamps
            .get(path)
            .copied()
            .or_else(|| stamp(path).ok())
            .unwrap_or(FileStamp {
                size: 0,
                mtime_ns: 0,
            })
    }

    /// A path of a content already recorded.
    fn link(&self, path: &Path) -> Record {
        Record {
            path: path.into(),
            stamp: self.file_stamp(path),
            content_hash: self.hashes.get(path).cloned().flatten(),
            facts: None,
        }
    }

    /// Record cores just read, with what was read or why it could not be.
    pub fn record(&mut self, outcomes: &[Outcome]) -> Result<(), CrashDbError> {
        let records: Vec<Record> = outcomes
            .iter()
            .map(|(path, outcome)| Record {
                path: path.clone(),
                stamp: self.file_stamp(path),
                content_hash: self.hashes.get(path).cloned().flatten(),
                facts: Some(match outcome {
                    Ok(core) => CrashFacts::triaged(core, self.host.as_deref()),
                    Err(e) => CrashFacts::unreadable(path, e, self.host.as_deref()),
                }),
            })
            .collect();
        self.write(&records)
    }

    /// Read `cores` in `pool` with `analyse`, recording results as they
    /// arrive (every [`RECORD_BATCH`] results, or when none came for a
    /// quarter second): an interrupted run keeps what it read, other
    /// writers get their turns, and no worker waits for a slow core of its
    /// batch. Then link the batch's copies. The outcomes come back in the
    /// order of `cores`. On a database error the reading still finishes
    /// (the pool cannot be stopped midway), and the error is returned.
    pub fn read_and_record<F>(
        &mut self,
        pool: &rayon::ThreadPool,
        cores: &[PathBuf],
        analyse: F,
    ) -> Result<Vec<Outcome>, CrashDbError>
    where
        F: Fn(&PathBuf) -> Outcome + Sync,
    {
        use std::sync::mpsc::{RecvTimeoutError, channel};
        let (sender, receiver) = channel::<(usize, Outcome)>();
        let mut outcomes: Vec<(usize, Outcome)> = Vec::with_capacity(cores.len());
        let mut failed = None;
        std::thread::scope(|scope| {
            scope.spawn(|| {
                pool.install(|| {
                    cores
                        .par_iter()
                        .enumerate()
                        .for_each_with(sender, |sender, (i, path)| {
                            // The receiver outlives the senders: a send fails only
                            // if this thread's scope is unwinding.
                            let _ = sender.send((i, analyse(path)));
                        });
                });
            });
            let mut batch: Vec<(usize, Outcome)> = Vec::new();
            loop {
                let done = match receiver.recv_timeout(std::time::Duration::from_millis(250)) {
                    Ok(outcome) => {
                        batch.push(outcome);
                        if batch.len() < RECORD_BATCH {
                            continue;
                        }
                        false
                    }
                    Err(RecvTimeoutError::Timeout) => false,
                    Err(RecvTimeoutError::Disconnected) => true,
                };
                if !batch.is_empty() && failed.is_none() {
                    let read: Vec<Outcome> = batch.iter().map(|(_, o)| o.clone()).collect();
                    if let Err(e) = self.record(&read) {
                        failed = Some(e);
                    }
                }
                outcomes.append(&mut batch);
                if done {
                    break;
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        self.finish()?;
        outcomes.sort_by_key(|(i, _)| *i);
        Ok(outcomes.into_iter().map(|(_, o)| o).collect())
    }

    /// Link the copies within the batch, now that their contents are recorded.
    pub fn finish(&mut self) -> Result<(), CrashDbError> {
        let copies = std::mem::take(&mut self.copies);
        let records: Vec<Record> = copies.iter().map(|p| self.link(p)).collect();
        self.write(&records)
    }

    fn write(&mut self, records: &[Record]) -> Result<(), CrashDbError> {
        if records.is_empty() {
            return Ok(());
        }
        let outcomes = self.store.record(records)?;
        for (record, outcome) in records.iter().zip(outcomes) {
            match outcome {
                Recorded::NewCrash => {
                    self.summary.new_crashes += 1;
                    if record.facts.as_ref().is_some_and(|f| f.error.is_some()) {
                        self.summary.unreadable += 1;
                    }
                }
                Recorded::NewPath => self.summary.new_paths += 1,
                Recorded::AlreadyRecorded => self.summary.already_recorded += 1,
            }
        }
        Ok(())
    }
}
