//! Crashes per day as inline SVG bar charts: no script, no font files, no
//! network, so the page renders the same from a file anywhere.

use std::fmt::Write as _;

/// Seconds in a day.
const DAY: u64 = 86_400;

/// The most bars a chart has: a longer period is put in buckets of
/// several days.
pub const MAX_BARS: u64 = 60;

/// The days a report's charts share, so that groups compare at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// The first day (Unix seconds at 00:00 UTC).
    pub start: u64,
    /// Days per bar.
    pub bucket_days: u64,
    /// Bars.
    pub bars: u64,
}

impl Period {
    /// The period covering `times` (Unix seconds); `None` when there are none.
    pub fn covering(times: impl IntoIterator<Item = u64>) -> Option<Period> {
        let (mut first, mut last) = (u64::MAX, 0);
        for t in times {
            first = first.min(t);
            last = last.max(t);
        }
        if first > last {
            return None;
        }
        let start = first - first % DAY;
        let days = (last - start) / DAY + 1;
        let bucket_days = days.div_ceil(MAX_BARS).max(1);
        Some(Period {
            start,
            bucket_days,
            bars: days.div_ceil(bucket_days),
        })
    }

    /// Crashes per bar of `times`; times outside the period are left out.
    pub fn counts(&self, times: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let mut counts = vec![0u64; usize::try_from(self.bars).unwrap_or(0)];
        for t in times {
            let Some(offset) = t.checked_sub(self.start) else {
                continue;
            };
            let bar = offset / DAY / self.bucket_days;
            if let Some(c) = usize::try_from(bar).ok().and_then(|b| counts.get_mut(b)) {
                *c += 1;
            }
        }
        counts
    }

    /// The first day of bar `i`, `YYYY-MM-DD`.
    pub fn day_of_bar(&self, i: u64) -> String {
        let start = self.start + i * self.bucket_days * DAY;
        crate::triage::utc_text(start)
            .get(..10)
            .unwrap_or_default()
            .to_string()
    }
}

/// A small trend line for the groups table: bars without axes.
pub fn sparkline(counts: &[u64]) -> String {
    let (width, height) = (120.0, 22.0);
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bar = (width / counts.len().max(1) as f64).min(12.0);
    let mut svg = format!(
        r#"<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="crashes per day">"#
    );
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let h = (c as f64 / max * (height - 2.0)).max(2.0);
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{:.2}" y="{:.2}" width="{:.2}" height="{h:.2}"/>"#,
            i as f64 * bar,
            height - h,
            (bar - 0.5).max(0.8)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A bar chart with its axes: the first and last day under the bars, the
/// largest count beside them, each bar's day and count in its tooltip.
pub fn chart(period: &Period, counts: &[u64], label: &str) -> String {
    let (width, height) = (640.0, 150.0);
    let (left, right, top, bottom) = (36.0, 8.0, 10.0, 24.0);
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    // Bars of a short period stay bars, not one block.
    let bar = (plot_w / counts.len().max(1) as f64).min(40.0);
    let unit = if period.bucket_days == 1 {
        "per day".to_string()
    } else {
        format!("per {} days", period.bucket_days)
    };
    let mut svg = format!(
        r#"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{label}: crashes {unit}">"#
    );
    // The axes: along the bottom, then up the left side.
    let _ = write!(
        svg,
        r#"<path class="axis" d="M{left} {bottom_y} H{end} M{left} {top} V{bottom_y}"/>"#,
        bottom_y = top + plot_h,
        end = width - right
    );
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" text-anchor="end">{max}</text><text x="{x}" y="{y0}" text-anchor="end">0</text>"#,
        x = left - 4.0,
        y = top + 8.0,
        y0 = top + plot_h
    );
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let h = (c as f64 / max as f64 * plot_h).max(1.5);
        let _ = write!(
            svg,
            r#"<rect class="bar" x="{:.2}" y="{:.2}" width="{:.2}" height="{h:.2}"><title>{}: {c}</title></rect>"#,
            left + i as f64 * bar,
            top + plot_h - h,
            (bar - 1.0).max(1.0),
            period.day_of_bar(i as u64),
        );
    }
    let last = period.bars.saturating_sub(1);
    let _ = write!(
        svg,
        r#"<text x="{left}" y="{y}">{}</text><text x="{x}" y="{y}" text-anchor="end">{} ({unit})</text></svg>"#,
        period.day_of_bar(0),
        period.day_of_bar(last),
        y = height - 6.0,
        x = width - right,
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_has_at_most_max_bars() {
        let day0 = 1_790_000_000 - 1_790_000_000 % DAY;
        let p = Period::covering([day0 + 5, day0 + 2 * DAY + 7]).unwrap();
        assert_eq!((p.start, p.bucket_days, p.bars), (day0, 1, 3));
        assert_eq!(p.counts([day0 + 1, day0 + 2, day0 + 2 * DAY]), [2, 0, 1]);
        let long = Period::covering([day0, day0 + 365 * DAY]).unwrap();
        assert!(long.bars <= MAX_BARS && long.bars * long.bucket_days >= 366);
        assert_eq!(Period::covering([]), None);
    }

    #[test]
    fn charts_are_svg_with_one_bar_per_nonzero_count() {
        let p = Period {
            start: 0,
            bucket_days: 1,
            bars: 3,
        };
        let svg = chart(&p, &[1, 0, 4], "group 1");
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("<title>1970-01-03: 4</title>"), "{svg}");
        assert_eq!(sparkline(&[0, 2]).matches("<rect").count(), 1);
    }
}
