//! Recording a batch of cores: what `triage --db`, `triage --watch` and the
//! Python package's distributed triage share. The caller reads the cores
//! (in its own threads or on its own machines); this decides which need
//! reading and records what was read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{
    Candidate, CrashDbError, CrashFacts, CrashId, CrashStore, FileStamp, Fingerprint, Record,
    Recorded, content_hash, fingerprint, open_store, regroup, stamp,
};
use crate::triage::CoreTriage;

/// The most results recorded in one transaction.
pub const RECORD_BATCH: usize = 64;

/// How many times a record is compared again when other writers record
/// crashes of its fingerprint meanwhile.
const MAX_COMPARE_ROUNDS: usize = 8;

/// What identifies a file of the batch.
#[derive(Debug, Clone, Default)]
struct Identity {
    /// `None`: the file could not be read.
    fingerprint: Option<Fingerprint>,
    /// Its content id, when a candidate copy made it worth taking.
    content_hash: Option<String>,
    /// The candidates compared with it.
    compared: Vec<CrashId>,
}

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
    /// Each core's fingerprint and what it was compared with.
    identities: HashMap<PathBuf, Identity>,
    /// Copies of cores read in this batch: linked once those are recorded.
    copies: Vec<PathBuf>,
    /// The facts recorded of each content id with copies in the batch: a
    /// copy's record carries them, in case the core it copies was recorded
    /// meanwhile by another writer, which took no content id.
    facts_of_content: HashMap<String, CrashFacts>,
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
            identities: HashMap::new(),
            copies: Vec::new(),
            facts_of_content: HashMap::new(),
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

    /// Forget the batch's stamps and identities (a long-running recorder calls
    /// it after each batch, to stay bounded in memory).
    pub fn clear_batch(&mut self) {
        self.stamps.clear();
        self.identities.clear();
        self.copies.clear();
        self.facts_of_content.clear();
    }

    /// The files not recorded with their current size and modification
    /// time; the others are counted, never opened. Paths are made absolute
    /// (not resolved: a symlink is its own path), so that runs from other
    /// folders find them and the report links to them.
    pub fn drop_recorded(&mut self, files: Vec<PathBuf>) -> Result<Vec<PathBuf>, CrashDbError> {
        let mut stamped = Vec::with_capacity(files.len());
        let mut pending = Vec::new();
        for path in files {
            let path = std::path::absolute(&path).unwrap_or(path);
            // A file that cannot be looked at is read anyway: reading it says why.
            match stamp(&path) {
                Ok(now) => stamped.push((path, now)),
                Err(_) => pending.push(path),
            }
        }
        let paths: Vec<PathBuf> = stamped.iter().map(|(p, _)| p.clone()).collect();
        let recorded = self.store.path_stamps(&paths)?;
        for ((path, now), recorded) in stamped.into_iter().zip(recorded) {
            if recorded == Some(now) {
                self.summary.already_recorded += 1;
            } else {
                self.stamps.insert(path.clone(), now);
                pending.push(path);
            }
        }
        Ok(pending)
    }

    /// The cores to read. Each core is fingerprinted (in the current rayon
    /// pool); where a recorded crash or another core of the batch has its
    /// fingerprint, the content ids are compared (taken where missing, the
    /// recorded crash's from a path of it that is unchanged). A core whose
    /// content is recorded is linked to its crash now, a second copy within
    /// the batch once the first is recorded. A core that cannot be
    /// fingerprinted is read, to say why.
    pub fn drop_recorded_contents(
        &mut self,
        cores: Vec<PathBuf>,
    ) -> Result<Vec<PathBuf>, CrashDbError> {
        let printed: Vec<(PathBuf, Option<Fingerprint>)> = cores
            .into_par_iter()
            .map(|path| {
                let print = fingerprint(&path).ok();
                (path, print)
            })
            .collect();
        let mut in_batch: HashMap<&str, usize> = HashMap::new();
        for (_, print) in &printed {
            if let Some(print) = print {
                *in_batch.entry(print.id.as_str()).or_default() += 1;
            }
        }
        let prints: Vec<Fingerprint> = printed.iter().filter_map(|(_, p)| p.clone()).collect();
        let mut found = self.store.candidates(&prints)?.into_iter();
        let mut candidates: Vec<Vec<Candidate>> = printed
            .iter()
            .map(|(_, print)| match print {
                Some(_) => found.next().unwrap_or_default(),
                None => Vec::new(),
            })
            .collect();
        // Content ids: of the cores that may be copies, and of the recorded
        // crashes they may be copies of that have none yet.
        let contents: Vec<Option<String>> = printed
            .par_iter()
            .zip(&candidates)
            .map(|((path, print), candidates)| {
                let print = print.as_ref()?;
                let copy_possible = !candidates.is_empty()
                    || in_batch.get(print.id.as_str()).is_some_and(|&n| n > 1);
                copy_possible.then(|| content_hash(path).ok()).flatten()
            })
            .collect();
        self.take_recorded_contents(candidates.iter_mut().flatten().collect())?;
        let mut to_read = Vec::new();
        let mut linked = Vec::new();
        let mut first_of: HashSet<String> = HashSet::new();
        for (((path, print), candidates), content) in
            printed.into_iter().zip(candidates).zip(contents)
        {
            match &content {
                Some(h)
                    if candidates
                        .iter()
                        .any(|c| c.content_hash.as_ref() == Some(h)) =>
                {
                    linked.push(path.clone())
                }
                Some(h) if !first_of.insert(h.clone()) => self.copies.push(path.clone()),
                _ => to_read.push(path.clone()),
            }
            let identity = Identity {
                fingerprint: print,
                content_hash: content,
                compared: candidates.iter().map(|c| c.id).collect(),
            };
            self.identities.insert(path, identity);
        }
        let records: Vec<Record> = linked.iter().map(|p| self.link(p)).collect();
        self.write(records)?;
        Ok(to_read)
    }

    /// Take and store the content ids the candidates lack (in the current
    /// rayon pool), from an unchanged path of each; a candidate whose paths
    /// all changed or went keeps none, and no copy of it is recognized.
    fn take_recorded_contents(
        &mut self,
        candidates: Vec<&mut Candidate>,
    ) -> Result<(), CrashDbError> {
        let mut lacking: BTreeMap<CrashId, Vec<&mut Candidate>> = BTreeMap::new();
        for candidate in candidates {
            if candidate.content_hash.is_none() {
                lacking.entry(candidate.id).or_default().push(candidate);
            }
        }
        let taken: Vec<Option<String>> = lacking
            .par_iter()
            .map(|(_, same)| same.first().and_then(|c| content_of_recorded(&c.paths)))
            .collect();
        for ((id, same), content) in lacking.into_iter().zip(taken) {
            let Some(content) = content else { continue };
            self.store.set_content(id, &content)?;
            for candidate in same {
                candidate.content_hash = Some(content.clone());
            }
        }
        Ok(())
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

    /// A record of `path`, with `facts` or (`None`) as a path of a content
    /// already recorded.
    fn record_of(&self, path: &Path, facts: Option<CrashFacts>) -> Record {
        let identity = self.identities.get(path).cloned().unwrap_or_default();
        Record {
            path: path.into(),
            stamp: self.file_stamp(path),
            fingerprint: identity.fingerprint.map(|f| f.id),
            content_hash: identity.content_hash,
            compared: identity.compared,
            facts,
        }
    }

    /// A path of a content already recorded.
    fn link(&self, path: &Path) -> Record {
        self.record_of(path, None)
    }

    /// Record cores just read, with what was read or why it could not be.
    pub fn record(&mut self, outcomes: &[Outcome]) -> Result<(), CrashDbError> {
        let records: Vec<Record> = outcomes
            .iter()
            .map(|(path, outcome)| {
                let facts = match outcome {
                    Ok(core) => CrashFacts::triaged(core, self.host.as_deref()),
                    Err(e) => CrashFacts::unreadable(path, e, self.host.as_deref()),
                };
                self.record_of(path, Some(facts))
            })
            .collect();
        for record in &records {
            if let (Some(content), Some(facts)) = (&record.content_hash, &record.facts) {
                self.facts_of_content.insert(content.clone(), facts.clone());
            }
        }
        self.write(records)
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

    /// Link the copies within the batch, now that their contents are
    /// recorded. Each carries its content's facts: where the core it copies
    /// was recorded by another writer without a content id, it is compared
    /// with that crash (whose content id is then taken) and linked.
    pub fn finish(&mut self) -> Result<(), CrashDbError> {
        let copies = std::mem::take(&mut self.copies);
        let records: Vec<Record> = copies
            .iter()
            .map(|path| {
                let content = self
                    .identities
                    .get(path)
                    .and_then(|i| i.content_hash.as_ref());
                let facts = content.and_then(|c| self.facts_of_content.get(c)).cloned();
                self.record_of(path, facts)
            })
            .collect();
        self.write(records)
    }

    /// Record, comparing again the records that crashes of their
    /// fingerprint recorded meanwhile left unresolved.
    fn write(&mut self, records: Vec<Record>) -> Result<(), CrashDbError> {
        let mut pending = records;
        for _ in 0..MAX_COMPARE_ROUNDS {
            if pending.is_empty() {
                return Ok(());
            }
            let outcomes = self.store.record(&pending)?;
            let mut unresolved = Vec::new();
            for (record, outcome) in pending.into_iter().zip(outcomes) {
                match outcome {
                    Recorded::NewCrash => {
                        self.summary.new_crashes += 1;
                        if record.facts.as_ref().is_some_and(|f| f.error.is_some()) {
                            self.summary.unreadable += 1;
                        }
                    }
                    Recorded::NewPath => self.summary.new_paths += 1,
                    Recorded::AlreadyRecorded => self.summary.already_recorded += 1,
                    Recorded::Unresolved => unresolved.push(record),
                }
            }
            pending = Vec::with_capacity(unresolved.len());
            for record in unresolved {
                pending.push(self.compare_again(record)?);
            }
        }
        match pending.first() {
            Some(record) => Err(CrashDbError::Contended {
                path: record.path.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Compare a record with every crash of its fingerprint recorded now.
    fn compare_again(&mut self, mut record: Record) -> Result<Record, CrashDbError> {
        let Some(print) = self
            .identities
            .get(&record.path)
            .and_then(|i| i.fingerprint.clone())
        else {
            return Ok(record);
        };
        if record.content_hash.is_none() {
            record.content_hash = content_hash(&record.path).ok();
        }
        let mut candidates: Vec<Candidate> = self
            .store
            .candidates(&[print])?
            .into_iter()
            .flatten()
            .collect();
        self.take_recorded_contents(candidates.iter_mut().collect())?;
        record.compared = candidates.iter().map(|c| c.id).collect();
        if let Some(identity) = self.identities.get_mut(&record.path) {
            identity.content_hash = record.content_hash.clone();
            identity.compared = record.compared.clone();
        }
        Ok(record)
    }
}

/// The content id of a recorded crash, from the first of its paths whose
/// file still has its recorded stamp.
fn content_of_recorded(paths: &[(PathBuf, FileStamp)]) -> Option<String> {
    paths
        .iter()
        .filter(|(path, recorded)| stamp(path).is_ok_and(|now| now == *recorded))
        .find_map(|(path, _)| content_hash(path).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreadable(path: &Path) -> Vec<Outcome> {
        vec![(path.into(), Err(UnreadableCore("not a core".into())))]
    }

    /// Two writers read copies of one new core at once: the second to
    /// record finds the first's crash of its fingerprint, compares content
    /// ids (the first's taken from its path) and links its copy.
    #[test]
    fn a_copy_recorded_meanwhile_by_another_writer_is_linked() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, &bytes).unwrap();
        std::fs::write(&b, &bytes).unwrap();
        let db = dir.path().join("crashes.db");
        let url = db.to_str().unwrap();
        let mut first = Ingest::open(url, None).unwrap();
        let mut second = Ingest::open(url, None).unwrap();
        let pending = first.drop_recorded(vec![a.clone()]).unwrap();
        assert_eq!(
            first.drop_recorded_contents(pending).unwrap(),
            std::slice::from_ref(&a)
        );
        let pending = second.drop_recorded(vec![b.clone()]).unwrap();
        assert_eq!(
            second.drop_recorded_contents(pending).unwrap(),
            std::slice::from_ref(&b)
        );
        first.record(&unreadable(&a)).unwrap();
        second.record(&unreadable(&b)).unwrap();
        assert_eq!(
            (first.summary().new_crashes, first.summary().new_paths),
            (1, 0)
        );
        assert_eq!(
            (second.summary().new_crashes, second.summary().new_paths),
            (0, 1)
        );
        let candidates = second
            .store()
            .candidates(&[fingerprint(&a).unwrap()])
            .unwrap();
        assert_eq!(candidates[0].len(), 1);
        assert_eq!(
            candidates[0][0].content_hash,
            Some(content_hash(&a).unwrap())
        );
    }
}
