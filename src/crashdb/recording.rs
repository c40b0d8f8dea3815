//! Recording files in one write transaction: the algorithm both stores
//! run, over the few statements each engine provides. The transaction
//! holds the database's write lock, so a check and the insert after it see
//! the same rows.

use std::path::Path;

use super::columns::CrashColumns;
use super::{CrashDbError, CrashId, FileStamp, Record, Recorded};

/// What a transaction finds recorded of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Lookup {
    /// The stamp its path is recorded with, if it is.
    pub stamp: Option<FileStamp>,
    /// The crash with its content id, if one has it.
    pub with_content: Option<CrashId>,
    /// The crashes recorded with its fingerprint.
    pub with_fingerprint: Vec<CrashId>,
}

/// The statements of a recording transaction, in one engine's dialect
/// (a server's in as few round trips as it can).
pub(crate) trait RecordingTx {
    /// What is recorded of `path`, of this content id and fingerprint.
    fn look_up(
        &mut self,
        path: &Path,
        content_hash: Option<&str>,
        fingerprint: Option<&str>,
    ) -> Result<Lookup, CrashDbError>;
    /// Insert a crash with `path` as its path; `None` (and nothing
    /// recorded) when its content id is recorded already.
    fn insert_crash(
        &mut self,
        columns: &CrashColumns,
        path: &Path,
        stamp: FileStamp,
    ) -> Result<Option<CrashId>, CrashDbError>;
    /// Record `path` (or its new stamp) as a path of `crash`.
    fn set_path(
        &mut self,
        path: &Path,
        stamp: FileStamp,
        crash: CrashId,
    ) -> Result<(), CrashDbError>;
}

/// Record each file: a path recorded with its stamp is left alone; a file
/// whose content id a crash has is linked to it; a new crash is inserted
/// unless a crash of its fingerprint was recorded that its record did not
/// compare with (then it is [`Recorded::Unresolved`], for the caller to
/// compare and record again).
pub(crate) fn record_in(
    tx: &mut dyn RecordingTx,
    records: &[Record],
) -> Result<Vec<Recorded>, CrashDbError> {
    let mut outcomes = Vec::with_capacity(records.len());
    for record in records {
        let found = tx.look_up(
            &record.path,
            record.content_hash.as_deref(),
            record.fingerprint.as_deref(),
        )?;
        if found.stamp == Some(record.stamp) {
            outcomes.push(Recorded::AlreadyRecorded);
            continue;
        }
        let unknown = || CrashDbError::UnknownContent {
            path: record.path.clone(),
            content_hash: record.content_hash.clone().unwrap_or_default(),
        };
        let outcome = match (found.with_content, &record.facts) {
            (Some(id), _) => {
                tx.set_path(&record.path, record.stamp, id)?;
                Recorded::NewPath
            }
            (None, Some(_))
                if found
                    .with_fingerprint
                    .iter()
                    .any(|id| !record.compared.contains(id)) =>
            {
                Recorded::Unresolved
            }
            (None, Some(facts)) => {
                let columns = CrashColumns::of(record, facts);
                match tx.insert_crash(&columns, &record.path, record.stamp)? {
                    Some(_) => Recorded::NewCrash,
                    // Not reachable under the write lock; said rather than hidden.
                    None => return Err(unknown()),
                }
            }
            (None, None) => return Err(unknown()),
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
