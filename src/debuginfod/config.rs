//! The client's settings, read from the variables every debuginfod client
//! honours, so one environment serves gdb, elfutils and pymortem alike.

use std::path::PathBuf;
use std::time::Duration;

/// Seconds a server may take to connect, answer, or send the next bytes
/// (`DEBUGINFOD_TIMEOUT`), as elfutils' default.
const DEFAULT_TIMEOUT_SECS: u64 = 90;
/// Whole-download limit when `DEBUGINFOD_MAXTIME` is unset: elfutils has
/// none, but a server trickling bytes must not hold a run forever.
const DEFAULT_MAX_TIME_SECS: u64 = 1800;
/// Largest file accepted when `DEBUGINFOD_MAXSIZE` is unset: above the
/// biggest debug files distributions ship (a browser's is a few GiB).
const DEFAULT_MAX_SIZE: u64 = 8 << 30;
/// Servers asked, at most: a hostile variable cannot make one lookup
/// fan out without end.
const MAX_SERVERS: usize = 16;

/// How the client reaches servers and where it caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Server base URLs (`http://` or `https://`), asked in order.
    pub urls: Vec<String>,
    /// The cache root: `<root>/<build-id>/debuginfo` and `…/executable`.
    pub cache_dir: PathBuf,
    /// Longest wait to connect, for an answer, or between two reads.
    pub timeout: Duration,
    /// Longest a whole download may take.
    pub max_time: Duration,
    /// Largest file accepted, in bytes.
    pub max_size: u64,
    /// Report download progress (`DEBUGINFOD_PROGRESS`).
    pub progress: bool,
    /// Entries of `DEBUGINFOD_URLS` that were not used, with the reason.
    pub ignored_urls: Vec<String>,
}

impl Config {
    /// The settings from the environment, or `None` when
    /// `DEBUGINFOD_URLS` is unset or names no server: then, as in gdb,
    /// nothing is asked.
    pub fn from_env() -> Option<Config> {
        Self::from_vars(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// [`Config::from_env`] over any variable source (tests, embedders).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<Config> {
        let (urls, ignored_urls) = parse_urls(&var("DEBUGINFOD_URLS")?);
        if urls.is_empty() && ignored_urls.is_empty() {
            return None;
        }
        let seconds = |name: &str, default: u64| {
            // 0 or less means "no limit" in elfutils; a limit stays, but a long one.
            match var(name).and_then(|v| v.trim().parse::<i64>().ok()) {
                Some(s) if s > 0 => Duration::from_secs(s as u64),
                Some(_) => Duration::from_secs(DEFAULT_MAX_TIME_SECS),
                None => Duration::from_secs(default),
            }
        };
        let max_size = var("DEBUGINFOD_MAXSIZE")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|&n| n > 0)
            .map_or(DEFAULT_MAX_SIZE, |n| n as u64);
        Some(Config {
            urls,
            cache_dir: cache_dir(&var),
            timeout: seconds("DEBUGINFOD_TIMEOUT", DEFAULT_TIMEOUT_SECS),
            max_time: seconds("DEBUGINFOD_MAXTIME", DEFAULT_MAX_TIME_SECS),
            max_size,
            progress: var("DEBUGINFOD_PROGRESS").is_some_and(|v| !v.is_empty()),
            ignored_urls,
        })
    }

    /// Settings for `urls` with elfutils' defaults and the given cache.
    pub fn new(urls: Vec<String>, cache_dir: PathBuf) -> Config {
        Config {
            urls,
            cache_dir,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            max_time: Duration::from_secs(DEFAULT_MAX_TIME_SECS),
            max_size: DEFAULT_MAX_SIZE,
            progress: false,
            ignored_urls: Vec::new(),
        }
    }
}

/// Split `DEBUGINFOD_URLS` (space-separated) into usable base URLs, each
/// ending in `/`, and the entries left out.
fn parse_urls(text: &str) -> (Vec<String>, Vec<String>) {
    let mut urls = Vec::new();
    let mut ignored = Vec::new();
    for entry in text.split_ascii_whitespace() {
        let lower = entry.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            ignored.push(format!(
                "{entry}: only http:// and https:// servers are asked"
            ));
        } else if urls.len() >= MAX_SERVERS {
            ignored.push(format!("{entry}: more than {MAX_SERVERS} servers"));
        } else {
            let base = if entry.ends_with('/') {
                entry.to_string()
            } else {
                format!("{entry}/")
            };
            if !urls.contains(&base) {
                urls.push(base);
            }
        }
    }
    (urls, ignored)
}

/// `DEBUGINFOD_CACHE_PATH`, else elfutils' old `~/.debuginfod_client_cache`
/// if it exists, else `$XDG_CACHE_HOME/debuginfod_client`, else
/// `~/.cache/debuginfod_client`: the order elfutils uses.
fn cache_dir(var: &impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(p) = var("DEBUGINFOD_CACHE_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = var("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    if let Some(old) = home.as_ref().map(|h| h.join(".debuginfod_client_cache"))
        && old.is_dir()
    {
        return old;
    }
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(xdg).join("debuginfod_client");
    }
    home.unwrap_or_else(std::env::temp_dir)
        .join(".cache")
        .join("debuginfod_client")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn unset_or_empty_urls_turn_the_client_off() {
        assert_eq!(Config::from_vars(vars(&[])), None);
        assert_eq!(Config::from_vars(vars(&[("DEBUGINFOD_URLS", "  ")])), None);
    }

    #[test]
    fn urls_are_split_normalised_and_filtered() {
        let c = Config::from_vars(vars(&[
            (
                "DEBUGINFOD_URLS",
                "https://a.example  http://b:8002/ ftp://c https://a.example/",
            ),
            ("HOME", "/nonexistent-home"),
        ]))
        .unwrap();
        assert_eq!(c.urls, ["https://a.example/", "http://b:8002/"]);
        assert_eq!(c.ignored_urls.len(), 1);
        assert_eq!(
            c.cache_dir,
            PathBuf::from("/nonexistent-home/.cache/debuginfod_client")
        );
    }

    #[test]
    fn standard_variables_are_honoured() {
        let c = Config::from_vars(vars(&[
            ("DEBUGINFOD_URLS", "http://x"),
            ("DEBUGINFOD_CACHE_PATH", "/c"),
            ("DEBUGINFOD_TIMEOUT", "7"),
            ("DEBUGINFOD_MAXTIME", "0"),
            ("DEBUGINFOD_MAXSIZE", "1000"),
            ("DEBUGINFOD_PROGRESS", "1"),
            ("XDG_CACHE_HOME", "/x"),
        ]))
        .unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/c"));
        assert_eq!(c.timeout, Duration::from_secs(7));
        assert_eq!(c.max_time, Duration::from_secs(DEFAULT_MAX_TIME_SECS));
        assert_eq!(c.max_size, 1000);
        assert!(c.progress);
        let xdg = Config::from_vars(vars(&[
            ("DEBUGINFOD_URLS", "http://x"),
            ("XDG_CACHE_HOME", "/x"),
        ]))
        .unwrap();
        assert_eq!(xdg.cache_dir, PathBuf::from("/x/debuginfod_client"));
    }
}
