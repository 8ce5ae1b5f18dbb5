//! A progress bar on stderr for long work (a large lab's boot), drawn only when stderr
//! is a terminal and redrawn at most ten times a second.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Draws one line, over and over, then clears it.
#[derive(Debug)]
pub(crate) struct Progress {
    what: &'static str,
    drawn: Option<Instant>,
    tty: bool,
}

impl Progress {
    /// A bar for `what`; silent unless stderr is a terminal.
    pub(crate) fn new(what: &'static str) -> Progress {
        Progress {
            what,
            drawn: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Shows `done` of `all`, with `detail`.
    pub(crate) fn show(&mut self, done: usize, all: usize, detail: &str) {
        if !self.tty
            || self
                .drawn
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.drawn = Some(Instant::now());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", line(self.what, done, all, detail, 30));
        let _ = err.flush();
    }

    /// Clears the line.
    pub(crate) fn finish(&mut self) {
        if self.tty && self.drawn.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

/// `boot [########----------] 2/5 BGP sessions, t=0.4s`.
pub(crate) fn line(what: &str, done: usize, all: usize, detail: &str, width: usize) -> String {
    let filled = (done.min(all) * width).checked_div(all).unwrap_or(width);
    format!(
        "{what} [{}{}] {detail}",
        "#".repeat(filled),
        "-".repeat(width - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::line;

    #[test]
    fn the_bar_fills_with_the_work_done() {
        assert_eq!(line("boot", 0, 4, "x", 8), "boot [--------] x");
        assert_eq!(line("boot", 2, 4, "x", 8), "boot [####----] x");
        assert_eq!(line("boot", 4, 4, "x", 8), "boot [########] x");
        assert_eq!(
            line("boot", 9, 4, "x", 8),
            "boot [########] x",
            "never past full"
        );
        assert_eq!(
            line("boot", 0, 0, "x", 8),
            "boot [########] x",
            "nothing to do is done"
        );
    }
}
