//! Debug files and executables fetched by build-id from debuginfod servers.
//!
//! The client follows elfutils': servers from `DEBUGINFOD_URLS`, the same
//! cache layout and variables, so gdb and pymortem share what either
//! fetched. Everything a server sends is untrusted: a download is bounded
//! in time and size, and kept only when it is an ELF file with the build-id
//! that was asked for. Each build-id is asked for once per process, however
//! many cores of a batch need it.

mod cache;
mod config;
mod http;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

pub use config::Config;

use crate::elf::{ElfImage, hex};

/// Downloads run at once for one batch of requests, at most.
const PARALLEL_DOWNLOADS: usize = 4;

/// What is asked for: the separate debug file or the module file itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    /// `/buildid/<id>/debuginfo`.
    Debuginfo,
    /// `/buildid/<id>/executable`: the module file (also for libraries).
    Executable,
}

impl ArtifactKind {
    /// The name in URLs and cache paths.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::Debuginfo => "debuginfo",
            ArtifactKind::Executable => "executable",
        }
    }
}

/// Receives download progress (a terminal's progress bar).
pub trait DownloadProgress: Send + Sync {
    /// `received` bytes of `total` (when the server said) have arrived.
    fn advanced(&self, label: &str, received: u64, total: Option<u64>);
    /// The download ended, well or not.
    fn finished(&self, label: &str);
}

/// Why one server did not provide a file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The server does not have it (404).
    NotFound,
    /// Another HTTP status.
    Status(u16),
    /// No answer in time.
    Timeout {
        /// The phase that timed out.
        phase: String,
        /// The limit, in seconds.
        seconds: u64,
    },
    /// No connection, or a broken one.
    Unreachable(String),
    /// Larger than `DEBUGINFOD_MAXSIZE`.
    TooLarge {
        /// The announced size, if any.
        size: Option<u64>,
        /// The limit.
        max: u64,
    },
    /// Fewer bytes than announced.
    Truncated {
        /// Announced.
        expected: u64,
        /// Received.
        received: u64,
    },
    /// The answer is not an ELF file.
    NotElf,
    /// The answer has no build-id.
    NoBuildId,
    /// The answer is another build: the server lied or mixed files up.
    WrongBuildId {
        /// The build-id it carries, in hex.
        got: String,
    },
    /// The cache could not be written.
    Cache(String),
    /// A server said "not found" recently (cached): not asked again yet.
    RecentMiss,
    /// The server failed an earlier request of this run: not asked again.
    Down,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotFound => write!(f, "not found"),
            Failure::Status(code) => write!(f, "HTTP status {code}"),
            Failure::Timeout { phase, seconds } => {
                write!(
                    f,
                    "timed out ({phase}, limit {seconds} s; DEBUGINFOD_TIMEOUT / DEBUGINFOD_MAXTIME)"
                )
            }
            Failure::Unreachable(why) => write!(f, "{why}"),
            Failure::TooLarge { size: Some(s), max } => {
                write!(
                    f,
                    "{s} bytes, above the limit of {max} (DEBUGINFOD_MAXSIZE)"
                )
            }
            Failure::TooLarge { size: None, max } => {
                write!(f, "more than the limit of {max} bytes (DEBUGINFOD_MAXSIZE)")
            }
            Failure::Truncated { expected, received } => {
                write!(f, "truncated: {received} of {expected} bytes arrived")
            }
            Failure::NotElf => write!(f, "the answer is not an ELF file; it was discarded"),
            Failure::NoBuildId => write!(f, "the answer has no build-id; it was discarded"),
            Failure::WrongBuildId { got } => {
                write!(
                    f,
                    "the answer is another build (build-id {got}); it was discarded"
                )
            }
            Failure::Cache(why) => write!(f, "cannot write the cache: {why}"),
            Failure::Down => write!(f, "not asked: it failed an earlier request of this run"),
            Failure::RecentMiss => write!(
                f,
                "not found on a recent request (cached; delete the empty cache entry to ask again)"
            ),
        }
    }
}

/// One server's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The server's base URL, or the cache folder.
    pub server: String,
    /// What went wrong.
    pub failure: Failure,
}

/// No server provided the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct FetchError {
    /// The build-id, in hex.
    pub build_id: String,
    /// What was asked for.
    pub kind: ArtifactKind,
    /// Each server's answer.
    pub attempts: Vec<Attempt>,
}

impl FetchError {
    /// Every server answered "not found" (now or recently): the usual
    /// outcome for files a distribution does not index, not a fault.
    pub fn is_not_found(&self) -> bool {
        self.attempts
            .iter()
            .all(|a| matches!(a.failure, Failure::NotFound | Failure::RecentMiss))
    }

    fn describe(&self) -> String {
        let answers: Vec<String> = self
            .attempts
            .iter()
            .map(|a| format!("{}: {}", a.server, a.failure))
            .collect();
        format!(
            "no {} for build-id {} ({})",
            self.kind.as_str(),
            self.build_id,
            answers.join("; ")
        )
    }
}

/// A file the client provided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its path in the cache.
    pub path: PathBuf,
    /// The server it came from; `None` when it was already cached.
    pub server: Option<String>,
}

/// One file wanted.
#[derive(Debug, Clone)]
pub struct Request {
    /// The module's build-id.
    pub build_id: Vec<u8>,
    /// Debug file or module file.
    pub kind: ArtifactKind,
    /// What to call it in progress output (the module's name).
    pub label: String,
}

type Outcome = Result<Fetched, FetchError>;

/// One fetch per build-id and kind, shared by every caller that wants it.
type SharedOutcomes = HashMap<(Vec<u8>, ArtifactKind), Arc<OnceLock<Outcome>>>;

/// A debuginfod client shared by every core of a run.
pub struct Debuginfod {
    config: Config,
    agent: OnceLock<ureq::Agent>,
    progress: Option<Arc<dyn DownloadProgress>>,
    outcomes: Mutex<SharedOutcomes>,
    /// Servers that timed out or could not be reached: not asked again in
    /// this run, so a dead server costs one timeout, not one per module.
    down: Mutex<Vec<String>>,
    requests: AtomicU64,
}

impl std::fmt::Debug for Debuginfod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Debuginfod {{ config: {:?}, requests: {} }}",
            self.config,
            self.requests_made()
        )
    }
}

impl Debuginfod {
    /// A client for `config`.
    pub fn new(config: Config) -> Debuginfod {
        Debuginfod {
            config,
            agent: OnceLock::new(),
            progress: None,
            outcomes: Mutex::new(HashMap::new()),
            down: Mutex::new(Vec::new()),
            requests: AtomicU64::new(0),
        }
    }

    /// A client configured from the environment, or `None` when
    /// `DEBUGINFOD_URLS` names no server.
    pub fn from_env() -> Option<Debuginfod> {
        Config::from_env().map(Debuginfod::new)
    }

    /// Report download progress to `sink`.
    pub fn with_progress(mut self, sink: Arc<dyn DownloadProgress>) -> Debuginfod {
        self.progress = Some(sink);
        self
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// HTTP requests made so far.
    pub fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The cached file for `build_id`, without asking a server; only a
    /// valid file (ELF, that build-id) is returned.
    pub fn cached(&self, build_id: &[u8], kind: ArtifactKind) -> Option<ElfImage> {
        match cache::lookup(&self.config.cache_dir, build_id, kind) {
            cache::Lookup::Hit(image) => Some(image),
            _ => None,
        }
    }

    /// The file for `request`: from the cache, else from the servers in
    /// order. Concurrent and repeated calls for one build-id share a
    /// single fetch.
    pub fn fetch(&self, request: &Request) -> Result<Fetched, FetchError> {
        let key = (request.build_id.clone(), request.kind);
        let slot = {
            let mut outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(outcomes.entry(key).or_default())
        };
        slot.get_or_init(|| self.fetch_once(request)).clone()
    }

    /// [`Debuginfod::fetch`] for each request, several at once; outcomes in
    /// request order.
    pub fn fetch_all(&self, requests: &[Request]) -> Vec<Result<Fetched, FetchError>> {
        let slots: Vec<OnceLock<Outcome>> = requests.iter().map(|_| OnceLock::new()).collect();
        let next = AtomicUsize::new(0);
        let workers = requests.len().min(PARALLEL_DOWNLOADS);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(request) = requests.get(i) else {
                            break;
                        };
                        let _ = slots[i].set(self.fetch(request));
                    }
                });
            }
        });
        slots
            .into_iter()
            .zip(requests)
            .map(|(slot, request)| {
                slot.into_inner().unwrap_or_else(|| {
                    Err(self.error(
                        request,
                        vec![
                            self.attempt(Failure::Unreachable(
                                "the download thread stopped".into(),
                            )),
                        ],
                    ))
                })
            })
            .collect()
    }

    fn fetch_once(&self, request: &Request) -> Outcome {
        let root = &self.config.cache_dir;
        let mut attempts = Vec::new();
        match cache::lookup(root, &request.build_id, request.kind) {
            cache::Lookup::Hit(image) => {
                return Ok(Fetched {
                    path: image.path().to_path_buf(),
                    server: None,
                });
            }
            cache::Lookup::RecentMiss => {
                return Err(self.error(request, vec![self.attempt(Failure::RecentMiss)]));
            }
            // A file gdb or an older run left that is not the build asked for.
            cache::Lookup::Absent(Some(invalid)) => {
                attempts
                    .push(self.attempt(Failure::Cache(format!("{invalid}; asking the servers"))));
            }
            cache::Lookup::Absent(None) => {}
        }
        let id_hex = hex(&request.build_id);
        for server in &self.config.urls {
            if self.is_down(server) {
                attempts.push(Attempt {
                    server: server.clone(),
                    failure: Failure::Down,
                });
                continue;
            }
            match self.download_from(server, &id_hex, request) {
                Ok(path) => {
                    return Ok(Fetched {
                        path,
                        server: Some(server.clone()),
                    });
                }
                Err(failure) => {
                    if matches!(failure, Failure::Unreachable(_) | Failure::Timeout { .. }) {
                        self.down
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(server.clone());
                    }
                    attempts.push(Attempt {
                        server: server.clone(),
                        failure,
                    });
                }
            }
        }
        let error = self.error(request, attempts);
        if !error.attempts.is_empty() && error.is_not_found() {
            // Best effort, as elfutils: a read-only cache only costs a request next time.
            let _ = cache::record_miss(root, &id_hex, request.kind);
        }
        Err(error)
    }

    /// One server: download, check, and move into the cache.
    fn download_from(
        &self,
        server: &str,
        id_hex: &str,
        request: &Request,
    ) -> Result<PathBuf, Failure> {
        let url = format!("{server}buildid/{id_hex}/{}", request.kind.as_str());
        let cache_failure =
            |e: std::io::Error| Failure::Cache(format!("{}: {e}", self.config.cache_dir.display()));
        let start = || {
            cache::Pending::create(&self.config.cache_dir, id_hex, request.kind)
                .map_err(cache_failure)
        };
        let agent = self.agent.get_or_init(|| http::agent(&self.config));
        self.requests.fetch_add(1, Ordering::Relaxed);
        let label = format!("{} ({})", request.label, request.kind.as_str());
        let progress = self.progress.as_deref().map(|p| (p, label.as_str()));
        let result = http::download(agent, &url, &self.config, start, progress);
        if let Some((sink, label)) = progress {
            sink.finished(label);
        }
        let pending = result?;
        cache::validated(pending.path(), &request.build_id)?;
        pending.commit().map_err(cache_failure)
    }

    fn is_down(&self, server: &str) -> bool {
        self.down
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|s| s == server)
    }

    fn attempt(&self, failure: Failure) -> Attempt {
        Attempt {
            server: self.config.cache_dir.display().to_string(),
            failure,
        }
    }

    fn error(&self, request: &Request, attempts: Vec<Attempt>) -> FetchError {
        FetchError {
            build_id: hex(&request.build_id),
            kind: request.kind,
            attempts,
        }
    }
}
