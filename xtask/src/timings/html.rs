//! The timings report as one self-contained HTML page: inline CSS, an SVG timeline
//! drawn here (one row per span, bars coloured by outcome, the critical path outlined),
//! the spans as JSON, and a little inline JS to filter rows. A Content-Security-Policy
//! forbids every load from anywhere, so it opens the same offline.

use std::fmt::Write as _;

use super::layout::{self, Row};
use super::{Kind, TimedSpan, Timeline};

const CSS: &str = include_str!("report.css");
const JS: &str = include_str!("report.js");

/// Width of the label column and of the chart, in pixels.
const LABEL_WIDTH: f64 = 340.0;
const CHART_WIDTH: f64 = 900.0;
const ROW_HEIGHT: f64 = 20.0;
const AXIS_HEIGHT: f64 = 24.0;
/// Labels longer than this are cut (the bar's tooltip has the whole text).
const LABEL_CHARS: usize = 52;

/// What the page says above the chart.
#[derive(Debug, Clone, Default)]
pub struct Heading {
    /// `bootstrap` or `sync`.
    pub command: String,
    /// `ok`, `failed`, `interrupted`.
    pub status: String,
    pub log: String,
}

pub fn render(timeline: &Timeline, heading: &Heading) -> String {
    let spans = &timeline.spans;
    let count = |kind: Kind| spans.iter().filter(|s| s.kind == kind).count();
    let total = layout::human(timeline.total);
    let mut page = String::with_capacity(64 * 1024);
    let title = format!("cargo xtask {}: {} in {total}", heading.command, heading.status);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
         <title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        escape(&title)
    );
    let _ = write!(
        page,
        "<h1>cargo xtask {}: timings</h1>\n<p class=\"meta\">started {} &middot; \
         <span class=\"status {}\">{}</span> in {total} &middot; {} stage(s), {} layer(s), \
         {} gate(s), {} step(s), {} image(s), {} tool call(s) &middot; log: {}</p>\n",
        escape(&heading.command),
        escape(
            &timeline
                .started_at
                .round(jiff::Unit::Second)
                .unwrap_or(timeline.started_at)
                .to_string()
        ),
        escape(&heading.status),
        escape(&heading.status),
        count(Kind::Stage),
        count(Kind::Layer),
        count(Kind::Gate),
        count(Kind::Step),
        count(Kind::Image),
        count(Kind::Tool),
        escape(&heading.log),
    );
    page.push_str(LEGEND);
    chart(&mut page, timeline);
    critical_list(&mut page, spans);
    slowest_calls(&mut page, spans);
    let data = serde_json::json!({
        "total_ms": timeline.total.as_millis() as u64,
        "spans": spans,
    });
    // `</` inside a script element would end it early.
    let data = data.to_string().replace("</", "<\\/");
    let _ = write!(
        page,
        "<script type=\"application/json\" id=\"timeline-data\">{data}</script>\n\
         <script>\n{JS}</script>\n</body>\n</html>\n"
    );
    page
}

const LEGEND: &str = "<div class=\"legend\">\
<span><i class=\"ok\"></i>ok</span><span><i class=\"warned\"></i>warned</span>\
<span><i class=\"failed\"></i>failed</span><span><i class=\"stopped\"></i>stopped</span>\
<span><i class=\"skipped\"></i>skipped</span><span><i class=\"waited\"></i>waited</span>\
<span><i class=\"ok critical\"></i>on the critical path</span></div>\n\
<div class=\"controls\"><label><input type=\"checkbox\" id=\"show-tools\" checked> tool calls</label>\
<label><input type=\"checkbox\" id=\"only-critical\"> only the critical path</label>\
<span id=\"shown\"></span></div>\n";

fn chart(page: &mut String, timeline: &Timeline) {
    let rows = layout::rows(&timeline.spans, timeline.total, CHART_WIDTH);
    let width = LABEL_WIDTH + CHART_WIDTH + 70.0;
    let height = AXIS_HEIGHT + ROW_HEIGHT * rows.len() as f64;
    let _ = writeln!(
        page,
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" data-row-height=\"{ROW_HEIGHT}\" data-axis-height=\"{AXIS_HEIGHT}\">"
    );
    axis(page, timeline, height);
    for (n, row) in rows.iter().enumerate() {
        bar(page, &timeline.spans[row.span], row, AXIS_HEIGHT + ROW_HEIGHT * n as f64);
    }
    page.push_str("</svg>\n");
}

fn axis(page: &mut String, timeline: &Timeline, height: f64) {
    let (step, ticks) = layout::ticks(timeline.total, 12);
    let scale = CHART_WIDTH / timeline.total.as_secs_f64().max(1e-3);
    page.push_str("<g class=\"axis\">\n");
    for tick in ticks {
        let x = LABEL_WIDTH + tick * scale;
        let label = if step < 1.0 { format!("{tick:.1}s") } else { format!("{tick:.0}s") };
        let _ = writeln!(
            page,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{height}\"/>\
             <text class=\"tick\" x=\"{x:.1}\" y=\"14\">{label}</text>",
            AXIS_HEIGHT - 4.0
        );
    }
    page.push_str("</g>\n");
}

fn bar(page: &mut String, span: &TimedSpan, row: &Row, y: f64) {
    let kind = word(&span.kind);
    let outcome = word(&span.outcome);
    let critical = if span.critical { " critical" } else { "" };
    let label = match span.kind {
        Kind::Stage => span.name.clone(),
        Kind::Tool | Kind::Wait => span.name.clone(),
        other => format!("{} {}", word(&other), span.name),
    };
    let short: String = match label.chars().count() > LABEL_CHARS {
        true => label.chars().take(LABEL_CHARS - 1).chain(['…']).collect(),
        false => label.clone(),
    };
    let duration = layout::human(span.duration);
    let tip = format!(
        "{label}\n{} {outcome}: {duration}, from {} to {}{}",
        word(&span.kind),
        layout::human(span.start),
        layout::human(span.end()),
        if span.critical { "; on the critical path" } else { "" }
    );
    let (bar_y, bar_h) = match span.kind {
        Kind::Stage | Kind::Layer => (3.0, 14.0),
        Kind::Tool | Kind::Wait => (6.0, 8.0),
        _ => (4.0, 12.0),
    };
    let x = LABEL_WIDTH + row.x;
    let _ = writeln!(
        page,
        "<g class=\"row {kind}{critical}\" data-kind=\"{kind}\" data-critical=\"{}\" \
         transform=\"translate(0,{y})\">\
         <text class=\"label\" x=\"{:.0}\" y=\"14\">{}</text>\
         <rect class=\"bar {outcome}{critical}\" data-kind=\"{kind}\" data-name=\"{}\" \
         data-outcome=\"{outcome}\" x=\"{x:.1}\" y=\"{bar_y}\" width=\"{:.1}\" height=\"{bar_h}\">\
         <title>{}</title></rect>\
         <text class=\"duration\" x=\"{:.1}\" y=\"14\">{duration}</text></g>",
        u8::from(span.critical),
        4.0 + 14.0 * row.depth as f64,
        escape(&short),
        escape(&span.name),
        row.width,
        escape(&tip),
        x + row.width + 4.0,
    );
}

/// The critical path as a list of what a user acts on: stages, layers, gates, steps and
/// image fetches (tool calls and waits show in the chart).
fn critical_list(page: &mut String, spans: &[TimedSpan]) {
    page.push_str("<h2>Critical path</h2>\n<ol class=\"critical-path\">\n");
    for span in spans.iter().filter(|s| s.critical && !matches!(s.kind, Kind::Tool | Kind::Wait)) {
        let _ = writeln!(
            page,
            "<li class=\"{}\">{} <b>{}</b> {} <span class=\"status {}\">{}</span></li>",
            word(&span.kind),
            word(&span.kind),
            escape(&span.name),
            layout::human(span.duration),
            word(&span.outcome),
            word(&span.outcome),
        );
    }
    page.push_str("</ol>\n");
}

fn slowest_calls(page: &mut String, spans: &[TimedSpan]) {
    let mut calls: Vec<&TimedSpan> = spans.iter().filter(|s| s.kind == Kind::Tool).collect();
    calls.sort_by_key(|call| std::cmp::Reverse(call.duration));
    page.push_str(
        "<h2>Slowest tool calls</h2>\n<table class=\"calls\"><thead><tr><th>time</th>\
         <th>outcome</th><th>tag</th><th>command</th></tr></thead><tbody>\n",
    );
    for call in calls.iter().take(15) {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td class=\"status {}\">{}</td><td>{}</td><td><code>{}</code></td></tr>",
            layout::human(call.duration),
            word(&call.outcome),
            word(&call.outcome),
            escape(&call.tag),
            escape(&call.name),
        );
    }
    page.push_str("</tbody></table>\n");
}

/// The word a kind or outcome serializes to.
fn word<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timings::Outcome;
    use std::time::Duration;

    fn span(id: usize, parent: Option<usize>, kind: Kind, name: &str, ms: (u64, u64)) -> TimedSpan {
        TimedSpan {
            id,
            parent,
            kind,
            tag: "layers/10-bootstrap".into(),
            name: name.into(),
            start: Duration::from_millis(ms.0),
            duration: Duration::from_millis(ms.1 - ms.0),
            outcome: if kind == Kind::Gate { Outcome::Failed } else { Outcome::Ok },
            critical: kind != Kind::Tool,
        }
    }

    #[test]
    fn the_page_holds_one_bar_per_span_and_no_outside_reference() {
        let timeline = Timeline {
            started_at: jiff::Timestamp::UNIX_EPOCH,
            total: Duration::from_millis(2000),
            spans: vec![
                span(0, None, Kind::Stage, "layers", (0, 2000)),
                span(1, Some(0), Kind::Layer, "10-bootstrap", (0, 1500)),
                span(2, Some(1), Kind::Tool, "helmfile -f a.yaml sync </script><b>", (10, 900)),
                span(3, Some(1), Kind::Gate, "bootstrap-smoke", (900, 1500)),
            ],
        };
        let heading =
            Heading { command: "bootstrap".into(), status: "failed".into(), log: "/l".into() };
        let page = render(&timeline, &heading);
        assert_eq!(page.matches("<rect class=\"bar").count(), 4, "{page}");
        assert_eq!(page.matches("data-kind=\"layer\" data-name=\"10-bootstrap\"").count(), 1);
        assert!(page.contains("<rect class=\"bar failed critical\" data-kind=\"gate\""), "{page}");
        assert!(page.contains("helmfile -f a.yaml sync &lt;/script&gt;&lt;b&gt;"), "escaped");
        assert!(!page.contains("sync </script>"), "nothing ends the data script early");
        assert!(page.contains("<title>cargo xtask bootstrap: failed in 2.0s</title>"));
        for outside in ["src=", "href=", "@import", "url("] {
            assert!(!page.contains(outside), "{outside} would load something: {page}");
        }
        assert!(page.contains("<li class=\"gate\">gate <b>bootstrap-smoke</b> 600ms"), "{page}");
    }
}
