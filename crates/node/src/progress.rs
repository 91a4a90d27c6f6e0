//! A one-line progress bar on stderr, drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

pub struct Bar {
    label: String,
    total: u64,
    started: Instant,
    last: Mutex<Option<Instant>>,
    live: bool,
}

impl Bar {
    pub fn new(label: &str, total: u64) -> Self {
        Self {
            label: label.to_string(),
            total,
            started: Instant::now(),
            last: Mutex::new(None),
            live: std::io::stderr().is_terminal(),
        }
    }

    /// Redraws (at most ten times a second).
    pub fn set(&self, done: u64) {
        if !self.live {
            return;
        }
        let mut last = self.last.lock().expect("not poisoned");
        if last.is_some_and(|t| t.elapsed().as_millis() < 100) && done < self.total {
            return;
        }
        *last = Some(Instant::now());
        let share = if self.total == 0 {
            1.0
        } else {
            done as f64 / self.total as f64
        };
        let filled = (share.min(1.0) * 30.0) as usize;
        let rate = done as f64 / 1e6 / self.started.elapsed().as_secs_f64().max(1e-3);
        eprint!(
            "\r{} [{}{}] {:>3.0}% {:.1}/{:.1} MB {:.1} MB/s ",
            self.label,
            "#".repeat(filled),
            "-".repeat(30 - filled),
            share * 100.0,
            done as f64 / 1e6,
            self.total as f64 / 1e6,
            rate
        );
        let _ = std::io::stderr().flush();
    }

    pub fn finish(&self) {
        if self.live {
            self.set(self.total);
            eprintln!();
        }
    }
}
