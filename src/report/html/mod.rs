//! The crash database as a static HTML page: one self-contained file
//! (inline CSS and SVG, no script, no network), so it can be mailed,
//! archived or served as it is.
//!
//! What it shows: the groups, most crashes first, each with a trend of
//! crashes per day; then per group its chart, its representative crash's
//! stack, verdict and findings, the versions and hosts it was seen on, and
//! links to example cores; then the cores that could not be read. Every
//! text that comes from a core or a path is escaped: a core is hostile
//! input, and so is what it names.

mod svg;

pub use svg::{MAX_BARS, Period, chart, sparkline};

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::crashdb::{
    CrashDbError, CrashStore, GroupQuery, PYMORTEM_VERSION, StoredCrash, StoredGroup,
};
use crate::triage::signature::crash_kind;
use crate::triage::utc_text;

/// The most groups a page shows in detail (the table lists them all).
pub const DETAILED_GROUPS: usize = 200;
/// The most example cores linked per group.
pub const EXAMPLES_PER_GROUP: usize = 5;
/// The most unreadable cores listed.
pub const UNREADABLE_LISTED: usize = 200;

/// The page's file name in the output folder.
pub const INDEX: &str = "index.html";

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HtmlReportError {
    /// The database could not be read.
    #[error(transparent)]
    Database(#[from] CrashDbError),
    /// The output could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a written report holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HtmlReportSummary {
    /// The page.
    pub index: PathBuf,
    /// Crashes shown.
    pub crashes: u64,
    /// Groups shown.
    pub groups: usize,
    /// Unreadable cores counted.
    pub unreadable: u64,
}

/// Text for HTML, element content or attribute value: markup characters
/// as entities, control characters (a terminal's or not) as U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A `file://` URL of a path, every byte but unreserved ones and `/`
/// percent-encoded (a path is bytes, not always UTF-8).
pub fn file_url(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(char::from(b));
        } else {
            let _ = write!(url, "%{b:02X}");
        }
    }
    url
}

const STYLE: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#1b1b1b}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .4em;border-top:1px solid #ccc;padding-top:.8em}
.meta{color:#555;margin:0 0 1em}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 6px;vertical-align:top;border-bottom:1px solid #e4e4e4}
th{background:#f3f3f3;position:sticky;top:0}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12px/1.35 ui-monospace,monospace}pre{background:#f7f7f7;padding:.6em;overflow-x:auto;margin:.3em 0}
.bar{fill:#d9480f}.axis{stroke:#888;stroke-width:1;fill:none}svg text{font:11px sans-serif;fill:#444}
.verdict-corrupt{color:#b00020;font-weight:600}.verdict-suspicious{color:#b35c00;font-weight:600}
.verdict-incomplete{color:#555;font-style:italic}.verdict-clean{color:#2b7a0b}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:.4em 0}dt{color:#555}dd{margin:0}
";

/// A group with what the page shows of it.
struct GroupPage<'a> {
    group: &'a StoredGroup,
    crashes: Vec<&'a StoredCrash>,
}

/// Write the report of the store's crashes (those at or after
/// `query.since`; `query.limit` caps the groups shown) to `dir/index.html`,
/// creating `dir`. The page is written beside its final name and renamed,
/// so a reader never sees half a page.
pub fn write_html_report(
    store: &mut dyn CrashStore,
    query: &GroupQuery,
    dir: &Path,
) -> Result<HtmlReportSummary, HtmlReportError> {
    let page = render(store, query)?;
    let write_error = |path: &Path, source| HtmlReportError::Write {
        path: path.into(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    let index = dir.join(INDEX);
    let partial = dir.join(format!(".{INDEX}.partial"));
    std::fs::write(&partial, page.html.as_bytes()).map_err(|e| write_error(&partial, e))?;
    if let Err(e) = std::fs::rename(&partial, &index) {
        let _ = std::fs::remove_file(&partial);
        return Err(write_error(&index, e));
    }
    Ok(HtmlReportSummary {
        index,
        crashes: page.crashes,
        groups: page.groups,
        unreadable: page.unreadable,
    })
}

/// A rendered page.
struct Rendered {
    html: String,
    crashes: u64,
    groups: usize,
    unreadable: u64,
}

fn render(store: &mut dyn CrashStore, query: &GroupQuery) -> Result<Rendered, CrashDbError> {
    let list = store.groups(query)?;
    let all = store.crashes(&GroupQuery {
        since: query.since,
        limit: None,
    })?;
    let mut by_signature: HashMap<&str, Vec<&StoredCrash>> = HashMap::new();
    for crash in &all {
        if let (Some(signature), None) = (crash.signature.as_deref(), &crash.error) {
            by_signature.entry(signature).or_default().push(crash);
        }
    }
    let groups: Vec<GroupPage<'_>> = list
        .groups
        .iter()
        .map(|group| GroupPage {
            group,
            crashes: by_signature
                .remove(group.signature.as_str())
                .unwrap_or_default(),
        })
        .collect();
    let period = Period::covering(
        all.iter()
            .filter(|c| c.error.is_none())
            .filter_map(|c| c.time),
    );
    let mut html = String::with_capacity(64 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>pymortem crash report: {}</title><style>{STYLE}</style></head><body>\n",
        escape(&store.location())
    );
    let _ = writeln!(
        html,
        "<h1>Crash report</h1><p class=\"meta\">{} in {} from <code>{}</code>, \
         {} unreadable{}; written {} UTC by pymortem {PYMORTEM_VERSION}</p>",
        plural(list.crashes, "crash", "crashes"),
        plural(list.total_groups, "group", "groups"),
        escape(&store.location()),
        list.unreadable,
        query
            .since
            .map(|s| format!(", since {} UTC", utc_text(s)))
            .unwrap_or_default(),
        utc_text(crate::crashdb::unix_now()),
    );
    if let Some(period) = &period {
        let counts = period.counts(
            all.iter()
                .filter(|c| c.error.is_none())
                .filter_map(|c| c.time),
        );
        let _ = writeln!(
            html,
            "<section id=\"overview\">{}</section>",
            chart(period, &counts, "all groups")
        );
    }
    groups_table(&mut html, &groups, period.as_ref(), &list);
    for (i, page) in groups.iter().enumerate().take(DETAILED_GROUPS) {
        let detail = store.crash_detail(page.group.example_id)?;
        group_section(&mut html, i + 1, page, &detail, period.as_ref());
    }
    unreadable_section(&mut html, &all);
    html.push_str("</body></html>\n");
    Ok(Rendered {
        html,
        crashes: list.crashes,
        groups: groups.len(),
        unreadable: list.unreadable,
    })
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn crash_times<'a>(crashes: &'a [&'a StoredCrash]) -> impl Iterator<Item = u64> + 'a {
    crashes.iter().filter_map(|c| c.time)
}

/// `3 corrupt, 1 incomplete`, worst first, each in its colour.
fn verdict_mix(crashes: &[&StoredCrash]) -> String {
    let mut counts: BTreeMap<usize, (String, u64)> = BTreeMap::new();
    for crash in crashes {
        let verdict = crash.verdict.as_deref().unwrap_or("not checked");
        let rank = ["corrupt", "suspicious", "incomplete", "clean"]
            .iter()
            .position(|v| *v == verdict)
            .unwrap_or(4);
        counts.entry(rank).or_insert((verdict.to_string(), 0)).1 += 1;
    }
    counts
        .values()
        .map(|(verdict, n)| {
            format!(
                "<span class=\"verdict-{}\">{n} {}</span>",
                escape(&verdict.replace(' ', "-")),
                escape(verdict)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn groups_table(
    html: &mut String,
    groups: &[GroupPage<'_>],
    period: Option<&Period>,
    list: &crate::crashdb::GroupList,
) {
    html.push_str(
        "<table id=\"groups\"><thead><tr><th>#</th><th>crashes</th><th>crash</th>\
         <th>top Python frame</th><th>verdicts</th><th>Python</th><th>hosts</th>\
         <th>first seen</th><th>last seen</th><th>per day</th></tr></thead><tbody>\n",
    );
    for (i, page) in groups.iter().enumerate() {
        let g = page.group;
        let trend = period
            .map(|p| sparkline(&p.counts(crash_times(&page.crashes))))
            .unwrap_or_default();
        let top = g
            .parts
            .python_frames
            .first()
            .map_or("(none)".to_string(), |f| escape(f));
        let anchor = if i < DETAILED_GROUPS {
            format!("<a href=\"#g{}\">{}</a>", i + 1, i + 1)
        } else {
            (i + 1).to_string()
        };
        let _ = writeln!(
            html,
            "<tr><td class=\"n\">{anchor}</td><td class=\"n\">{}</td><td>{}<br><code>{}</code></td>\
             <td><code>{top}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{trend}</td></tr>",
            g.count,
            escape(&crash_kind(
                g.parts.fatal_error.as_deref(),
                g.parts.signal.as_deref()
            )),
            escape(&g.signature),
            verdict_mix(&page.crashes),
            escape(&g.python_versions.join(" ")),
            escape(&hosts_text(&g.hosts)),
            g.first_seen.map_or("-".into(), utc_text),
            g.last_seen.map_or("-".into(), utc_text),
        );
    }
    html.push_str("</tbody></table>\n");
    if (groups.len() as u64) < list.total_groups {
        let _ = writeln!(
            html,
            "<p class=\"meta\">The {} largest of {} groups are shown.</p>",
            groups.len(),
            list.total_groups
        );
    }
}

fn hosts_text(hosts: &[String]) -> String {
    if hosts.is_empty() {
        "unknown".into()
    } else {
        hosts.join(" ")
    }
}

fn group_section(
    html: &mut String,
    number: usize,
    page: &GroupPage<'_>,
    detail: &crate::crashdb::CrashDetail,
    period: Option<&Period>,
) {
    let g = page.group;
    let _ = writeln!(
        html,
        "<section class=\"group\" id=\"g{number}\"><h2>Group {number}: {} ({})</h2>",
        escape(&crash_kind(
            g.parts.fatal_error.as_deref(),
            g.parts.signal.as_deref()
        )),
        plural(g.count, "crash", "crashes"),
    );
    if let Some(period) = period {
        let counts = period.counts(crash_times(&page.crashes));
        html.push_str(&chart(period, &counts, &format!("group {number}")));
    }
    let _ = writeln!(
        html,
        "<dl><dt>signature</dt><dd><code>{}</code></dd><dt>verdicts</dt><dd>{}</dd>\
         <dt>Python</dt><dd>{}</dd><dt>hosts</dt><dd>{}</dd><dt>boots</dt><dd>{}</dd>\
         <dt>seen</dt><dd>{} to {} UTC</dd></dl>",
        escape(&g.signature),
        verdict_mix(&page.crashes),
        escape(&g.python_versions.join(" ")),
        escape(&hosts_text(&g.hosts)),
        g.boots,
        g.first_seen.map_or("-".into(), utc_text),
        g.last_seen.map_or("-".into(), utc_text),
    );
    let verdict = detail.verdict.as_deref().unwrap_or("not checked");
    let _ = writeln!(
        html,
        "<h3>Representative crash</h3><p>verdict: <span class=\"verdict-{}\">{}</span>{}</p>",
        escape(&verdict.replace(' ', "-")),
        escape(verdict),
        if detail.unchecked.is_empty() {
            String::new()
        } else {
            format!(
                "; could not check: {}",
                escape(&detail.unchecked.join(", "))
            )
        },
    );
    if !detail.findings.is_empty() {
        let _ = writeln!(
            html,
            "<h4>Findings</h4><pre>{}</pre>",
            escape(&detail.findings.join("\n"))
        );
    }
    // Crashes recorded before schema 3 have only their top frames.
    let stack = if detail.stack.is_empty() {
        let p = &detail.parts;
        p.python_frames
            .iter()
            .map(|f| format!("py  {f}"))
            .chain(p.native_frames.iter().map(|f| format!("    {f}")))
            .collect::<Vec<_>>()
    } else {
        detail.stack.clone()
    };
    let _ = writeln!(
        html,
        "<h4>Crashing thread, innermost first</h4><pre>{}</pre>",
        if stack.is_empty() {
            "(no stack was recovered)".to_string()
        } else {
            escape(&stack.join("\n"))
        }
    );
    html.push_str("<h4>Example cores</h4><ul>");
    let mut examples: Vec<&Path> = detail.paths.iter().map(PathBuf::as_path).collect();
    examples.extend(
        page.crashes
            .iter()
            .filter_map(|c| c.path.as_deref())
            .filter(|p| !detail.paths.iter().any(|d| d == p)),
    );
    for path in examples.iter().take(EXAMPLES_PER_GROUP) {
        let _ = write!(
            html,
            "<li><a href=\"{}\">{}</a></li>",
            escape(&file_url(path)),
            escape(&path.to_string_lossy())
        );
    }
    html.push_str("</ul></section>\n");
}

fn unreadable_section(html: &mut String, all: &[StoredCrash]) {
    let unreadable: Vec<&StoredCrash> = all.iter().filter(|c| c.error.is_some()).collect();
    if unreadable.is_empty() {
        return;
    }
    let _ = writeln!(
        html,
        "<h2 id=\"unreadable\">Cores that could not be read ({})</h2><table><thead><tr>\
         <th>core</th><th>why</th></tr></thead><tbody>",
        unreadable.len()
    );
    for crash in unreadable.iter().take(UNREADABLE_LISTED) {
        let path = crash
            .path
            .as_deref()
            .map_or("(no path)".into(), |p| p.to_string_lossy().into_owned());
        let _ = writeln!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td></tr>",
            escape(&path),
            escape(crash.error.as_deref().unwrap_or_default())
        );
    }
    html.push_str("</tbody></table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped() {
        assert_eq!(
            escape("<script>\"a\"&'b'\u{1b}[31m"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;\u{fffd}[31m"
        );
        use std::os::unix::ffi::OsStrExt;
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/var/c o\"re\xff"));
        assert_eq!(file_url(path), "file:///var/c%20o%22re%FF");
    }
}
