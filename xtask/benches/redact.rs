//! What redaction costs per line of tool output: every line the tools print passes
//! `Redactor::redact_line` before the log file gets it. Run with:
//!
//! ```text
//! cargo bench -p xtask --bench redact [-- LINES]
//! ```
//!
//! Prints the median time per line of a realistic mix (helmfile and helm output, a few
//! secret shapes) redacted with three learned values, the same lines written to a log
//! file through the `LogFile` sink without redaction, and their ratio.

use std::time::{Duration, Instant};

use xtask::events::{Event, Sink};
use xtask::redact::Redactor;
use xtask::sinks::LogFile;

const SAMPLE: &[&str] = &[
    "Upgrading release=postgres, chart=../charts/postgres, namespace=ameide",
    "Release \"postgres\" has been upgraded. Happy Helming!",
    "NAME: postgres",
    "LAST DEPLOYED: Tue Dec  1 12:58:56 2026",
    "NAMESPACE: ameide",
    "STATUS: deployed",
    "REVISION: 3",
    "TEST SUITE:     data-plane-smoke-postgres-ready",
    "postgres        ameide          postgres-0.1.0  0.1.0   1.2s",
    "wget: can't connect to remote host (10.43.0.17): Connection refused",
    "+ export PGPASSWORD=hunter2-hunter2",
    "Unseal Key 1: Lh+pclU9MvN9oH4uekt140MyQOaxHlOFrMPJLN338c88",
];

fn main() {
    let lines: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let input: Vec<&str> = SAMPLE.iter().cycle().take(lines).copied().collect();
    let redactor = Redactor::default();
    for value in ["ameide-local-postgres", "ameide-local-root", "s3cr3t-db-migrations"] {
        redactor.learn(value.as_bytes());
    }
    let dir = tempfile::tempdir().unwrap();
    let log = LogFile::open(&dir.path().join("bench.log")).unwrap();
    let redact = median(5, || {
        let started = Instant::now();
        for line in &input {
            std::hint::black_box(redactor.redact_line("layers/40-data-plane", line));
        }
        started.elapsed()
    });
    let write = median(5, || {
        let started = Instant::now();
        for line in &input {
            log.event(&Event::ToolOutput { tag: "layers/40-data-plane", line });
        }
        started.elapsed()
    });
    let per_line = |d: Duration| d.as_nanos() as f64 / lines as f64 / 1000.0;
    println!("lines:                       {lines}");
    println!("redact_line:                 {:>8.2} µs/line (median of 5)", per_line(redact));
    println!("log file write (no redact):  {:>8.2} µs/line (median of 5)", per_line(write));
    println!("ratio redact / write:        {:>8.2}x", redact.as_secs_f64() / write.as_secs_f64());
}

fn median(runs: usize, mut once: impl FnMut() -> Duration) -> Duration {
    let mut times: Vec<Duration> = (0..runs).map(|_| once()).collect();
    times.sort();
    times[times.len() / 2]
}
