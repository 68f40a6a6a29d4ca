//! Progress on stderr: a bar on a terminal, otherwise a plain line at most
//! every 2 s (a log file or CI output should not fill with redraws).

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

const PLAIN_EVERY: Duration = Duration::from_secs(2);

pub enum Progress {
    Bar(ProgressBar),
    /// `verb`: what the line says is done with the rows (`imported`, `exported`).
    Plain { start: Instant, last: Instant, verb: &'static str },
    Hidden,
}

impl Progress {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn new(total: u64, terminal: bool) -> Progress {
        Progress::of("imported", total, terminal)
    }

    /// The same, for rows that are `verb` (plain lines say it).
    pub fn of(verb: &'static str, total: u64, terminal: bool) -> Progress {
        if !terminal {
            let now = Instant::now();
            return Progress::Plain { start: now, last: now, verb };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{elapsed:>4} [{wide_bar}] {human_pos}/{human_len} rows  {rate}  eta {eta}")
            .map(|s| {
                s.progress_chars("=> ").with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} rows/s", state.per_sec());
                })
            });
        if let Ok(style) = style {
            bar.set_style(style);
        }
        Progress::Bar(bar)
    }

    /// `done` rows have a result, of about `total`.
    pub fn update(&mut self, done: u64, total: u64) {
        match self {
            Progress::Bar(bar) => {
                bar.set_length(total.max(done));
                bar.set_position(done);
            }
            Progress::Plain { start, last, verb } => {
                if last.elapsed() >= PLAIN_EVERY {
                    *last = Instant::now();
                    eprintln!("{}", plain_line(verb, done, total, start.elapsed()));
                }
            }
            Progress::Hidden => {}
        }
    }

    /// A message that must not be drawn over by the bar.
    pub fn println(&self, message: &str) {
        match self {
            Progress::Bar(bar) => bar.println(message),
            _ => eprintln!("{message}"),
        }
    }

    /// `println` for other threads.
    pub fn printer(&self) -> Box<dyn Fn(String) + Send + Sync> {
        match self {
            Progress::Bar(bar) => {
                let bar = bar.clone();
                Box::new(move |message| bar.println(message))
            }
            Progress::Plain { .. } => Box::new(|message| eprintln!("{message}")),
            Progress::Hidden => Box::new(|_| {}),
        }
    }

    pub fn finish(&mut self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// `imported 12000/100000 rows, 8400 rows/s, eta 10 s`.
pub fn plain_line(verb: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let total = total.max(done);
    let rate = if elapsed.as_secs_f64() > 0.0 { done as f64 / elapsed.as_secs_f64() } else { 0.0 };
    let eta = if rate > 0.0 { format!("{:.0} s", (total - done) as f64 / rate) } else { "?".to_string() };
    format!("{verb} {done}/{total} rows, {rate:.0} rows/s, eta {eta}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines() {
        assert_eq!(plain_line("imported", 12_000, 100_000, Duration::from_secs_f64(12_000.0 / 8_400.0)), "imported 12000/100000 rows, 8400 rows/s, eta 10 s");
        assert_eq!(plain_line("imported", 0, 10, Duration::ZERO), "imported 0/10 rows, 0 rows/s, eta ?");
        // The total is an estimate (a line count): never shown below what is done.
        assert_eq!(plain_line("exported", 12, 10, Duration::from_secs(1)), "exported 12/12 rows, 12 rows/s, eta 0 s");
    }
}
