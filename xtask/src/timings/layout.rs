//! Pure geometry of the timings report: the critical path, the rows in tree order, where
//! each bar goes, and the time axis. Unit-tested without a browser.

use std::time::Duration;

use super::TimedSpan;

/// Which spans lie on the critical path: walking back from the end of the run, the
/// span among siblings that ended last (the longest of those ending together) is
/// critical, then the one that ended last before it started, and so on; inside each
/// critical span, the same walk over its children. Stages run one after another, so
/// each is critical; inside the layers stage it is the layers, or an image fetch that
/// outlasted them.
pub fn critical_path(spans: &[TimedSpan], total: Duration) -> Vec<bool> {
    let mut critical = vec![false; spans.len()];
    let roots: Vec<usize> = (0..spans.len()).filter(|&i| spans[i].parent.is_none()).collect();
    walk(spans, &roots, Duration::ZERO, total, &mut critical);
    critical
}

fn walk(spans: &[TimedSpan], siblings: &[usize], from: Duration, to: Duration, out: &mut [bool]) {
    let mut cursor = to;
    loop {
        let next = siblings
            .iter()
            .copied()
            .filter(|&i| !out[i] && spans[i].start >= from && spans[i].end() <= cursor)
            .max_by_key(|&i| (spans[i].end(), spans[i].duration));
        let Some(index) = next else { break };
        out[index] = true;
        let children: Vec<usize> =
            (0..spans.len()).filter(|&c| spans[c].parent == Some(index)).collect();
        walk(spans, &children, spans[index].start, spans[index].end(), out);
        cursor = spans[index].start;
    }
}

/// One row of the chart: which span, how deep it sits, and its bar in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub span: usize,
    pub depth: usize,
    pub x: f64,
    pub width: f64,
}

/// The narrowest bar drawn, so an instant span (an unchanged layer) still shows.
pub const MIN_BAR: f64 = 2.0;

/// One row per span, each after its parent and its earlier siblings (by start), with
/// its bar scaled so `total` spans `width` pixels.
pub fn rows(spans: &[TimedSpan], total: Duration, width: f64) -> Vec<Row> {
    let scale = width / total.as_secs_f64().max(1e-3);
    let mut out = Vec::with_capacity(spans.len());
    let mut stack: Vec<(usize, usize)> =
        children_of(spans, None).into_iter().rev().map(|i| (i, 0)).collect();
    while let Some((index, depth)) = stack.pop() {
        let span = &spans[index];
        let x = span.start.as_secs_f64() * scale;
        let bar = (span.duration.as_secs_f64() * scale).max(MIN_BAR);
        out.push(Row { span: index, depth, x, width: bar.min((width - x).max(MIN_BAR)) });
        stack.extend(children_of(spans, Some(index)).into_iter().rev().map(|c| (c, depth + 1)));
    }
    out
}

fn children_of(spans: &[TimedSpan], parent: Option<usize>) -> Vec<usize> {
    let mut children: Vec<usize> =
        (0..spans.len()).filter(|&i| spans[i].parent == parent).collect();
    children.sort_by_key(|&i| (spans[i].start, i));
    children
}

/// Axis ticks: a step of 1, 2 or 5 times a power of ten seconds giving at most
/// `max_ticks` intervals over `total`, and the tick times (0 included).
pub fn ticks(total: Duration, max_ticks: usize) -> (f64, Vec<f64>) {
    let total = total.as_secs_f64().max(1e-3);
    let rough = total / max_ticks.max(1) as f64;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power);
    let count = (total / step).floor() as usize;
    (step, (0..=count).map(|n| n as f64 * step).collect())
}

/// `1.2s`, `850ms`, `2m05s`: a duration as the report writes it.
pub fn human(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 1.0 {
        format!("{}ms", duration.as_millis())
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", duration.as_secs() / 60, duration.as_secs() % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timings::{Kind, Outcome};

    fn span(id: usize, parent: Option<usize>, start_ms: u64, end_ms: u64) -> TimedSpan {
        TimedSpan {
            id,
            parent,
            kind: Kind::Tool,
            tag: String::new(),
            name: format!("s{id}"),
            start: Duration::from_millis(start_ms),
            duration: Duration::from_millis(end_ms - start_ms),
            outcome: Outcome::Ok,
            critical: false,
        }
    }

    fn marked(spans: &[TimedSpan], total_ms: u64) -> Vec<usize> {
        let critical = critical_path(spans, Duration::from_millis(total_ms));
        (0..spans.len()).filter(|&i| critical[i]).collect()
    }

    #[test]
    fn sequential_stages_are_all_critical() {
        let spans = [span(0, None, 0, 10), span(1, None, 10, 50), span(2, None, 55, 60)];
        assert_eq!(marked(&spans, 60), [0, 1, 2]);
    }

    #[test]
    fn inside_a_stage_the_chain_that_ends_last_is_critical() {
        // Stage 0 holds three layers in a row (1, 2, 3) and two image fetches running
        // beside them (4 ends early, 5 outlasts layer 2 but not layer 3).
        let spans = [
            span(0, None, 0, 100),
            span(1, Some(0), 0, 30),
            span(2, Some(0), 30, 60),
            span(3, Some(0), 60, 100),
            span(4, Some(0), 2, 20),
            span(5, Some(0), 2, 70),
        ];
        assert_eq!(marked(&spans, 100), [0, 1, 2, 3]);
        // An image fetch that outlasts every layer is the stage's path by itself.
        let mut slow = spans.to_vec();
        slow[5] = span(5, Some(0), 2, 100);
        slow[3] = span(3, Some(0), 60, 95);
        assert_eq!(marked(&slow, 100), [0, 5]);
    }

    #[test]
    fn the_walk_goes_into_critical_spans_only() {
        // Layer 1 (critical) holds a sync (3) and a gate (4) holding its helm test (5);
        // layer 2 ran before it and holds a call (6), critical too; a span outside any
        // critical chain (7, beside 6 but ending later than 2 starts) is not.
        let spans = [
            span(0, None, 0, 100),
            span(1, Some(0), 40, 100),
            span(2, Some(0), 0, 40),
            span(3, Some(1), 40, 70),
            span(4, Some(1), 72, 100),
            span(5, Some(4), 73, 99),
            span(6, Some(2), 0, 39),
            span(7, Some(0), 10, 45),
        ];
        assert_eq!(marked(&spans, 100), [0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn instant_spans_end_the_walk_without_looping() {
        let spans = [span(0, None, 0, 0), span(1, None, 0, 0)];
        assert_eq!(marked(&spans, 0), [0, 1]);
    }

    #[test]
    fn rows_follow_the_tree_and_scale_to_the_width() {
        let spans = [
            span(0, None, 0, 500),
            span(1, Some(0), 250, 500),
            span(2, Some(0), 0, 250),
            span(3, None, 500, 1000),
            span(4, Some(2), 100, 100),
        ];
        let rows = rows(&spans, Duration::from_millis(1000), 1000.0);
        let order: Vec<(usize, usize)> = rows.iter().map(|r| (r.span, r.depth)).collect();
        assert_eq!(order, [(0, 0), (2, 1), (4, 2), (1, 1), (3, 0)]);
        assert_eq!((rows[0].x, rows[0].width), (0.0, 500.0));
        assert_eq!((rows[3].x, rows[3].width), (250.0, 250.0));
        assert_eq!((rows[2].x, rows[2].width), (100.0, MIN_BAR), "an instant still shows");
    }

    #[test]
    fn ticks_are_round_and_cover_the_run() {
        assert_eq!(
            ticks(Duration::from_secs(58), 10),
            (10.0, vec![0.0, 10.0, 20.0, 30.0, 40.0, 50.0])
        );
        assert!((ticks(Duration::from_millis(900), 10).0 - 0.1).abs() < 1e-9);
        let (step, all) = ticks(Duration::from_secs(125), 8);
        assert_eq!(step, 20.0);
        assert_eq!(all.last(), Some(&120.0));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(1250)), "1.2s");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
    }
}
