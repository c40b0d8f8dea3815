//! debuginfod: debug files and executables fetched by build-id.
//!
//! A real server (elfutils' `debuginfod`, scanning a folder) serves the
//! Debian interpreters' debug files; with them removed from the search,
//! pymortem must show what it shows with the files in place, then work from
//! its cache with no request. Scripted servers answer with lies (another
//! build, an oversized, truncated or endless answer): each is a diagnostic,
//! and nothing is left in the cache.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pymortem::debuginfod::{ArtifactKind, Config, Debuginfod, Failure, Request};
use serde_json::Value;

use crate::support;

/// elfutils' server over `dirs`, on a free loopback port, stopped on drop.
pub struct Server {
    child: Child,
    pub url: String,
    _db: tempfile::TempDir,
}

impl Server {
    /// Start it and wait until every `.build-id` file under `dirs` is served.
    pub fn start(dirs: &[&Path]) -> Server {
        let ids: Vec<String> = dirs.iter().flat_map(|d| build_ids_under(d)).collect();
        Server::start_serving(dirs, &ids)
    }

    /// Start it over `dirs` and wait until it serves the debug files `ids` (hex).
    pub fn start_serving(dirs: &[&Path], ids: &[String]) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let db = tempfile::tempdir().unwrap();
        let child = Command::new("debuginfod")
            .args(["-F", "-L", "--disable-source-scan", "-c", "1", "-t", "0", "-g", "0"])
            .arg("-d")
            .arg(db.path().join("db.sqlite"))
            .args(["-p", &port.to_string()])
            .args(dirs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("debuginfod runs (apt-get install debuginfod; sample-cores/setup-interpreters.sh installs it)");
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _db: db,
        };
        assert!(!ids.is_empty(), "nothing to wait for under {dirs:?}");
        let deadline = Instant::now() + Duration::from_secs(180);
        for id in ids {
            while http_status(&format!("{}/buildid/{id}/debuginfo", server.url)) != Some(200) {
                assert!(
                    Instant::now() < deadline,
                    "debuginfod did not serve {id} within 180 s"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        server
    }

    /// Requests for `type` ("debuginfo", "executable") the server has answered.
    fn requests(&self, kind: &str) -> u64 {
        let metrics = http_body(&format!("{}/metrics", self.url));
        let key = format!("http_requests_total{{type=\"{kind}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .map_or(0, |n| n.trim().parse().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Build-ids of the `.build-id/xx/rest.debug` files under `dir`.
fn build_ids_under(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    let Ok(prefixes) = std::fs::read_dir(dir.join(".build-id")) else {
        return ids;
    };
    for prefix in prefixes.flatten() {
        let head = prefix.file_name().to_string_lossy().into_owned();
        for file in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_suffix(".debug") {
                ids.push(format!("{head}{rest}"));
            }
        }
    }
    ids
}

fn http_status(url: &str) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    agent.get(url).call().ok().map(|r| r.status().as_u16())
}

fn http_body(url: &str) -> String {
    ureq::get(url)
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// `command --json` on the entry's core with `args`, and debuginfod `env`.
fn json(command: &[&str], core: &str, args: &[String], env: &[(&str, &str)]) -> Value {
    let mut all: Vec<&str> = command.to_vec();
    all.extend(["--json", "--no-cache"]);
    all.extend(args.iter().map(String::as_str));
    all.push(core);
    let (code, stdout, stderr) = support::pymortem_with_env(&all, env);
    assert!(code == 0 || code == 3, "{all:?}: exit {code}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{all:?}: {e}: {stdout}"))
}

/// The `--sysroot` of an entry, and never the host's /usr/lib/debug.
fn base_args(entry: &Value) -> Vec<String> {
    let mut args = vec!["--no-default-debug-dir".to_string()];
    if let Some(root) = entry["sysroot"].as_str() {
        args.extend(["--sysroot".into(), root.into()]);
    }
    args
}

/// The debug state of `module` in an `info --json` report.
fn debug_via(info: &Value, module: &str) -> String {
    let m = info["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["path"].as_str().is_some_and(|p| p.ends_with(module)))
        .unwrap_or_else(|| panic!("no module {module}"));
    m["debug"]["via"].as_str().unwrap_or("none").to_string()
}

fn native_frames_named(report: &Value) -> usize {
    report["threads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["stack"]["frames"].as_array().into_iter().flatten())
        .filter(|f| f["kind"] == "native" && f["function"].is_string() && f["source"].is_array())
        .count()
}

/// `fetched` equals `expected` but for where a DWARF layout was read: the
/// cache, for the debug file in place.
fn assert_same(fetched: &Value, expected: &Value, cache: &Path, what: &str) {
    let (mut fetched, mut expected) = (fetched.clone(), expected.clone());
    if expected["layout_source"]["kind"] == "dwarf" {
        let path = fetched["layout_source"]["path"].take();
        assert!(
            path.as_str()
                .is_some_and(|p| Path::new(p).starts_with(cache)),
            "{what}: the DWARF layout came from {path}, not the cache"
        );
        expected["layout_source"]["path"].take();
    }
    let mut found = Vec::new();
    differences(&fetched, &expected, String::new(), &mut found);
    assert!(
        found.is_empty(),
        "{what}: {} differences, first: {:#?}",
        found.len(),
        &found[..found.len().min(5)]
    );
}

/// JSON pointers where `a` and `b` differ, with both values.
fn differences(a: &Value, b: &Value, at: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()).collect::<BTreeSet<_>>() {
                let null = Value::Null;
                differences(
                    x.get(key).unwrap_or(&null),
                    y.get(key).unwrap_or(&null),
                    format!("{at}/{key}"),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, format!("{at}/{i}"), out);
            }
        }
        _ if a != b => out.push(format!("{at}: {a} vs {b}")),
        _ => {}
    }
}

#[test]
fn debian_cores_get_debug_files_from_a_server_then_from_the_cache() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    for interp in ["debian-3.11", "debian-3.13", "debian-3.14", "debian-3.15"] {
        let entry = support::entry(&manifest, interp, "threads", "kernel");
        let core = entry["core"].as_str().unwrap();
        let debug_dir = PathBuf::from(entry["debug_dirs"][0].as_str().unwrap());
        let module = Path::new(entry["exe"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let bare = base_args(entry);
        let mut with_files = bare.clone();
        with_files.extend(["--debug-dir".into(), debug_dir.display().to_string()]);

        let expected = json(&["threads", "--native"], core, &with_files, &[]);
        let without = json(&["threads", "--native"], core, &bare, &[]);
        assert!(
            native_frames_named(&expected) > native_frames_named(&without),
            "{interp}: the debug files add no named native frame with a line: the test shows nothing"
        );

        let server = Server::start(&[&debug_dir]);
        let url = server.url.clone();
        let cache = tempfile::tempdir().unwrap();
        let cache_path = cache.path().to_str().unwrap();
        let env = [
            ("DEBUGINFOD_URLS", url.as_str()),
            ("DEBUGINFOD_CACHE_PATH", cache_path),
        ];
        let fetched = json(&["threads", "--native"], core, &bare, &env);
        assert_same(
            &fetched,
            &expected,
            cache.path(),
            &format!("{interp}: through the server"),
        );
        let info = json(&["info"], core, &bare, &env);
        assert_eq!(debug_via(&info, &module), "debuginfod", "{interp}");

        // Again: everything from the cache, the server not asked.
        let asked = server.requests("debuginfo") + server.requests("executable");
        let again = json(&["threads", "--native"], core, &bare, &env);
        assert_same(
            &again,
            &expected,
            cache.path(),
            &format!("{interp}: from the cache"),
        );
        assert_eq!(
            server.requests("debuginfo") + server.requests("executable"),
            asked,
            "{interp}: the second run asked the server"
        );
        // And with the server gone.
        drop(server);
        let offline = json(&["threads", "--native"], core, &bare, &env);
        assert_same(
            &offline,
            &expected,
            cache.path(),
            &format!("{interp}: offline"),
        );
        let offline_info = json(&["info"], core, &bare, &env);
        let mentions: Vec<String> = support::diagnostic_messages(&offline_info)
            .into_iter()
            .filter(|m| m.contains("debuginfod"))
            .collect();
        assert!(
            mentions.is_empty(),
            "{interp}: offline run asked: {mentions:?}"
        );
        assert!(
            support::schema_violations(&offline_info).is_empty(),
            "{:?}",
            support::schema_violations(&offline_info)
        );
    }
}

#[test]
fn a_triage_batch_asks_for_each_build_id_once() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let entries: Vec<&Value> = manifest
        .iter()
        .filter(|e| e["interp"] == "debian-3.13")
        .take(6)
        .collect();
    assert!(entries.len() >= 3, "too few debian-3.13 cores");
    let debug_dir = PathBuf::from(entries[0]["debug_dirs"][0].as_str().unwrap());
    let bare = base_args(entries[0]);
    // Every module without local debug information is asked for once.
    let mut wanted = BTreeSet::new();
    for e in &entries {
        let info = json(&["info"], e["core"].as_str().unwrap(), &bare, &[]);
        for m in info["modules"].as_array().unwrap() {
            if m["kind"] != "vdso" && m["debug"]["state"] == "missing" {
                wanted.insert(m["build_id"].as_str().unwrap().to_string());
            }
        }
    }
    let server = Server::start(&[&debug_dir]);
    let before = server.requests("debuginfo");
    let cache = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = vec!["triage", "--json"];
    args.extend(bare.iter().map(String::as_str));
    args.extend(entries.iter().map(|e| e["core"].as_str().unwrap()));
    let env = [
        ("DEBUGINFOD_URLS", server.url.as_str()),
        ("DEBUGINFOD_CACHE_PATH", cache.path().to_str().unwrap()),
    ];
    let (code, stdout, stderr) = support::pymortem_with_env(&args, &env);
    assert!(
        code == 0 || code == 1 || code == 3,
        "triage: exit {code}: {stderr}"
    );
    assert!(!stdout.is_empty());
    assert_eq!(
        server.requests("debuginfo") - before,
        wanted.len() as u64,
        "one request per build-id for {} cores",
        entries.len()
    );
}

#[test]
fn a_missing_module_file_comes_from_the_server() {
    if support::matrix_missing() {
        return;
    }
    let manifest = support::manifest();
    let entry = support::entry(&manifest, "debian-3.14", "threads", "gcore");
    let core = entry["core"].as_str().unwrap();
    let exe = PathBuf::from(entry["exe"].as_str().unwrap());
    let debug_dir = PathBuf::from(entry["debug_dirs"][0].as_str().unwrap());
    // The server holds the interpreter itself besides its debug file.
    let files = tempfile::tempdir().unwrap();
    std::fs::copy(&exe, files.path().join(exe.file_name().unwrap())).unwrap();
    let server = Server::start(&[&debug_dir, files.path()]);
    let empty_root = tempfile::tempdir().unwrap();
    let args = vec![
        "--no-default-debug-dir".to_string(),
        "--sysroot".to_string(),
        empty_root.path().display().to_string(),
    ];
    let cache = tempfile::tempdir().unwrap();
    let env = [
        ("DEBUGINFOD_URLS", server.url.as_str()),
        ("DEBUGINFOD_CACHE_PATH", cache.path().to_str().unwrap()),
    ];
    let info = json(&["info"], core, &args, &env);
    let module = info["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "executable")
        .unwrap();
    assert_eq!(module["file"]["state"], "verified", "{module}");
    assert!(
        module["file"]["path"]
            .as_str()
            .unwrap()
            .starts_with(cache.path().to_str().unwrap()),
        "{module}"
    );
    assert!(server.requests("executable") >= 1);
    // Python stacks need only the interpreter: they equal those with the sysroot.
    let expected = json(&["threads"], core, &support::search_args(entry), &[]);
    let fetched = json(&["threads"], core, &args, &env);
    let stacks = |r: &Value| {
        r["threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["stack"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(stacks(&fetched), stacks(&expected));
}

#[test]
fn without_debuginfod_urls_or_with_no_debuginfod_nothing_is_asked() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let url = scripted_server(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Answer::Status(404)
    });
    let core = support::write_temp(
        tempfile::tempdir().unwrap().keep().as_path(),
        "synthetic.core",
        &support::synth::sample().build(),
    );
    let cache = tempfile::tempdir().unwrap();
    let core = core.to_str().unwrap();
    let env = [
        ("DEBUGINFOD_URLS", url.as_str()),
        ("DEBUGINFOD_CACHE_PATH", cache.path().to_str().unwrap()),
    ];
    let (code, _, stderr) = support::pymortem_with_env(&["info", "--no-debuginfod", core], &env);
    assert!(code == 0 || code == 3, "{stderr}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "--no-debuginfod asked");
    let (code, _, stderr) = support::pymortem_with_env(&["info", core], &[]);
    assert!(code == 0 || code == 3, "{stderr}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no DEBUGINFOD_URLS, yet asked"
    );
    let _ = std::fs::remove_dir_all(Path::new(core).parent().unwrap());
}

/// What a scripted server sends for one request.
enum Answer {
    Status(u16),
    /// 200 with these bytes and, if given, this Content-Length.
    Body(Vec<u8>, Option<usize>),
    /// Accept, then never answer.
    Silence,
}

/// A server on loopback answering each request with `answer(path)`.
fn scripted_server(answer: impl Fn(&str) -> Answer + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let answer = Arc::clone(&answer);
            std::thread::spawn(move || serve(stream, &*answer));
        }
    });
    url
}

fn serve(mut stream: TcpStream, answer: &dyn Fn(&str) -> Answer) {
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
        request.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    match answer(&path) {
        Answer::Status(code) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Answer::Body(bytes, length) => {
            let _ = match length {
                Some(n) => write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n"
                ),
                None => write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"),
            };
            let _ = stream.write_all(&bytes);
        }
        Answer::Silence => std::thread::sleep(Duration::from_secs(30)),
    }
}

/// A real ELF file with a build-id: this test binary.
fn some_elf() -> (Vec<u8>, Vec<u8>) {
    let exe = std::env::current_exe().unwrap();
    let bytes = std::fs::read(&exe).unwrap();
    let file = std::fs::File::open(&exe).unwrap();
    let image = pymortem::elf::ElfImage::map(&exe, &file).unwrap();
    let id = image.build_id().expect("the test binary has a build-id");
    (bytes, id)
}

/// Files in `dir` and below, by path.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn client(url: &str, cache: &Path) -> Debuginfod {
    let mut config = Config::new(vec![format!("{url}/")], cache.to_path_buf());
    config.timeout = Duration::from_secs(2);
    config.max_time = Duration::from_secs(20);
    Debuginfod::new(config)
}

fn request(id: &[u8]) -> Request {
    Request {
        build_id: id.to_vec(),
        kind: ArtifactKind::Debuginfo,
        label: "test".into(),
    }
}

#[test]
fn hostile_answers_are_rejected_and_leave_nothing_in_the_cache() {
    let (elf, real_id) = some_elf();
    let wrong_id = vec![0x5a; 20];
    let elf_for_server = elf.clone();
    let url = scripted_server(move |path| match path {
        p if p.contains("/5a5a") => {
            Answer::Body(elf_for_server.clone(), Some(elf_for_server.len()))
        }
        p if p.contains("/0101") => Answer::Body(b"<html>not a debug file</html>".to_vec(), None),
        p if p.contains("/0202") => Answer::Body(vec![0; 64], Some(1 << 20)),
        p if p.contains("/0303") => Answer::Silence,
        p if p.contains("/0404") => Answer::Body(vec![0; 4096], Some(4096)),
        p if p.contains("/0505") => Answer::Body(vec![0; 4096], None),
        _ => Answer::Status(500),
    });
    let cache = tempfile::tempdir().unwrap();
    let mut small = client(&url, cache.path()).config().clone();
    small.max_size = 1000;
    type Case = (Vec<u8>, Debuginfod, fn(&Failure) -> bool);
    let cases: Vec<Case> = vec![
        (wrong_id, client(&url, cache.path()), |f| {
            matches!(f, Failure::WrongBuildId { .. })
        }),
        (vec![1; 20], client(&url, cache.path()), |f| {
            *f == Failure::NotElf
        }),
        (vec![2; 20], client(&url, cache.path()), |f| {
            matches!(f, Failure::Truncated { .. })
        }),
        (vec![3; 20], client(&url, cache.path()), |f| {
            matches!(f, Failure::Timeout { .. })
        }),
        (vec![4; 20], Debuginfod::new(small.clone()), |f| {
            matches!(
                f,
                Failure::TooLarge {
                    size: Some(4096),
                    ..
                }
            )
        }),
        (vec![5; 20], Debuginfod::new(small), |f| {
            matches!(f, Failure::TooLarge { .. })
        }),
        (vec![6; 20], client(&url, cache.path()), |f| {
            *f == Failure::Status(500)
        }),
    ];
    for (id, client, expected) in cases {
        let error = client
            .fetch(&request(&id))
            .expect_err("a hostile answer was accepted");
        assert_eq!(error.attempts.len(), 1, "{error}");
        assert!(expected(&error.attempts[0].failure), "{error}");
        assert!(!error.is_not_found());
    }
    assert_eq!(
        files_under(cache.path()),
        Vec::<PathBuf>::new(),
        "left in the cache"
    );
    // The same file under its own build-id is accepted.
    let url_ok = scripted_server(move |_| Answer::Body(elf.clone(), Some(elf.len())));
    let fetched = client(&url_ok, cache.path())
        .fetch(&request(&real_id))
        .unwrap();
    assert!(fetched.path.starts_with(cache.path()));
    assert_eq!(files_under(cache.path()), vec![fetched.path]);
}

#[test]
fn a_wrong_build_id_answer_is_a_diagnostic_of_the_command() {
    if support::matrix_missing() {
        return;
    }
    let (elf, _) = some_elf();
    let url = scripted_server(move |_| Answer::Body(elf.clone(), Some(elf.len())));
    let manifest = support::manifest();
    let entry = manifest
        .iter()
        .find(|e| e["interp"] == "debian-3.13" && e["scenario"] == "threads")
        .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let env = [
        ("DEBUGINFOD_URLS", url.as_str()),
        ("DEBUGINFOD_CACHE_PATH", cache.path().to_str().unwrap()),
    ];
    let info = json(
        &["info"],
        entry["core"].as_str().unwrap(),
        &base_args(entry),
        &env,
    );
    let messages: Vec<String> = support::diagnostic_messages(&info)
        .into_iter()
        .filter(|m| m.contains("debuginfod") && m.contains("another build"))
        .collect();
    assert!(!messages.is_empty(), "{:#}", info["diagnostics"]);
    for m in info["modules"].as_array().unwrap() {
        assert_ne!(m["debug"]["via"], "debuginfod", "{m}");
    }
    assert_eq!(files_under(cache.path()), Vec::<PathBuf>::new());
}

#[test]
fn not_found_is_remembered_and_concurrent_requests_share_one_fetch() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let url = scripted_server(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        Answer::Status(404)
    });
    let cache = tempfile::tempdir().unwrap();
    let first = client(&url, cache.path());
    let same = request(&[7; 20]);
    let outcomes = first.fetch_all(&[same.clone(), same.clone(), same.clone()]);
    assert!(
        outcomes
            .iter()
            .all(|o| o.as_ref().is_err_and(|e| e.is_not_found()))
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one fetch for three requests"
    );
    // A new client (a new run) reads the recorded miss: no request.
    let second = client(&url, cache.path());
    let error = second.fetch(&same).unwrap_err();
    assert_eq!(error.attempts[0].failure, Failure::RecentMiss);
    assert_eq!(second.requests_made(), 0);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn a_server_that_does_not_answer_costs_one_timeout_per_run() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let url = scripted_server(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        Answer::Silence
    });
    let cache = tempfile::tempdir().unwrap();
    let client = client(&url, cache.path());
    let requests: Vec<Request> = (10u8..18).map(|i| request(&[i; 20])).collect();
    let outcomes = client.fetch_all(&requests);
    let failures: Vec<Failure> = outcomes
        .into_iter()
        .map(|o| o.unwrap_err().attempts[0].failure.clone())
        .collect();
    assert!(
        failures
            .iter()
            .all(|f| matches!(f, Failure::Timeout { .. } | Failure::Down)),
        "{failures:?}"
    );
    assert!(failures.contains(&Failure::Down), "{failures:?}");
    // The four downloads in flight when the first timed out, at most.
    assert!(
        hits.load(Ordering::SeqCst) <= 4,
        "{} requests",
        hits.load(Ordering::SeqCst)
    );
    assert_eq!(files_under(cache.path()), Vec::<PathBuf>::new());
}
