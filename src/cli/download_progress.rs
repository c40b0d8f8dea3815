//! Progress of debuginfod downloads on stderr: a bar per large download on
//! a terminal; nothing when stderr is piped or redirected.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use pymortem::debuginfod::DownloadProgress;

use super::escape::esc;

/// Downloads smaller than this finish before a bar would help.
const BAR_FROM_BYTES: u64 = 1 << 20;

/// Bars of the downloads under way.
pub(crate) struct DownloadBars {
    bars: indicatif::MultiProgress,
    /// Below this size no bar is drawn.
    threshold: u64,
    open: Mutex<HashMap<String, indicatif::ProgressBar>>,
}

impl DownloadBars {
    /// Bars when stderr is a terminal, else `None`; for every download
    /// when `all` (`DEBUGINFOD_PROGRESS`), else for large ones.
    pub(crate) fn for_stderr(all: bool) -> Option<DownloadBars> {
        std::io::stderr().is_terminal().then(|| DownloadBars {
            threshold: if all { 0 } else { BAR_FROM_BYTES },
            bars: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn new_bar(&self, label: &str, total: Option<u64>) -> indicatif::ProgressBar {
        let bar = self.bars.add(match total {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        });
        let template = if total.is_some() {
            "{msg} {bar:24} {bytes}/{total_bytes} · {bytes_per_sec}"
        } else {
            "{msg} {spinner} {bytes} · {bytes_per_sec}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        // A module name comes from the core: never raw control characters.
        bar.set_message(format!("debuginfod: {}", esc(label)));
        bar
    }
}

impl DownloadProgress for DownloadBars {
    fn advanced(&self, label: &str, received: u64, total: Option<u64>) {
        if received < self.threshold && total.is_none_or(|n| n < self.threshold) {
            return;
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let bar = open
            .entry(label.to_string())
            .or_insert_with(|| self.new_bar(label, total));
        bar.set_position(received);
    }

    fn finished(&self, label: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = open.remove(label) {
            bar.finish_and_clear();
        }
    }
}
