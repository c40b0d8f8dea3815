//! One download from one server, bounded in time and size.

use std::io::{Read, Write};

use super::cache::Pending;
use super::{Config, DownloadProgress, Failure};

/// Bytes read per step; progress is reported after each.
const CHUNK: usize = 256 * 1024;

/// A blocking agent honouring the configured limits.
pub fn agent(config: &Config) -> ureq::Agent {
    let wait = Some(config.timeout);
    ureq::Agent::config_builder()
        // A 404 is an answer, not a transport error.
        .http_status_as_error(false)
        .timeout_resolve(wait)
        .timeout_connect(wait)
        .timeout_send_request(wait)
        .timeout_recv_response(wait)
        .timeout_per_read(wait)
        .timeout_global(Some(config.max_time))
        .max_redirects(8)
        .user_agent(format!("pymortem/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// GET `url` into a cache entry made by `start` once the server has
/// answered 200, so that a refusal leaves nothing on disk.
pub fn download(
    agent: &ureq::Agent,
    url: &str,
    config: &Config,
    start: impl FnOnce() -> Result<Pending, Failure>,
    progress: Option<(&dyn DownloadProgress, &str)>,
) -> Result<Pending, Failure> {
    let mut response = agent
        .get(url)
        .header("X-DEBUGINFOD-MAXSIZE", config.max_size.to_string())
        .call()
        .map_err(|e| transport_failure(&e, config))?;
    match response.status().as_u16() {
        200 => {}
        404 => return Err(Failure::NotFound),
        code => return Err(Failure::Status(code)),
    }
    let announced = response.body().content_length();
    if let Some(size) = announced.filter(|&n| n > config.max_size) {
        return Err(Failure::TooLarge {
            size: Some(size),
            max: config.max_size,
        });
    }
    let mut reader = response
        .body_mut()
        .with_config()
        // One byte over the limit tells "too large" from "exactly the limit".
        .limit(config.max_size.saturating_add(1))
        .reader();
    let mut pending = start()?;
    let mut buf = vec![0u8; CHUNK];
    let mut received: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_failure(e, config, received, announced)),
        };
        received += n as u64;
        if received > config.max_size {
            return Err(Failure::TooLarge {
                size: announced,
                max: config.max_size,
            });
        }
        pending
            .file()
            .write_all(&buf[..n])
            .map_err(|e| Failure::Cache(format!("{}: {e}", pending.path().display())))?;
        if let Some((sink, label)) = progress {
            sink.advanced(label, received, announced);
        }
    }
    if let Some(expected) = announced.filter(|&n| n != received) {
        return Err(Failure::Truncated { expected, received });
    }
    Ok(pending)
}

/// What a failed request says, in the user's terms.
fn transport_failure(error: &ureq::Error, config: &Config) -> Failure {
    match error {
        ureq::Error::Timeout(phase) => Failure::Timeout {
            seconds: phase_seconds(*phase, config),
            phase: phase.to_string(),
        },
        ureq::Error::BodyExceedsLimit(_) => Failure::TooLarge {
            size: None,
            max: config.max_size,
        },
        other => Failure::Unreachable(other.to_string()),
    }
}

/// The limit that a timeout in `phase` ran into.
fn phase_seconds(phase: ureq::Timeout, config: &Config) -> u64 {
    match phase {
        ureq::Timeout::Global => config.max_time.as_secs(),
        _ => config.timeout.as_secs(),
    }
}

/// A failure while reading the body.
fn read_failure(
    error: std::io::Error,
    config: &Config,
    received: u64,
    announced: Option<u64>,
) -> Failure {
    if let Some(inner) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<ureq::Error>())
    {
        return transport_failure(inner, config);
    }
    match error.kind() {
        std::io::ErrorKind::TimedOut => Failure::Timeout {
            seconds: config.timeout.as_secs(),
            phase: "reading the answer".to_string(),
        },
        std::io::ErrorKind::UnexpectedEof => Failure::Truncated {
            expected: announced.unwrap_or(0),
            received,
        },
        _ => Failure::Unreachable(error.to_string()),
    }
}
