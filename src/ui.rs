//! The one printer: every byte the tool shows goes through [`Ui`], which knows `--quiet`, `-v`
//! and `--color` (and `NO_COLOR`). Results go to stdout ([`Ui::out`]); messages, warnings and
//! errors to stderr. Errors print as cargo and uv print them: `error: ...`, then `Caused by:`
//! lines (deeper causes with `-v`), then a separate `help:` line with the fix.
//!
//! Nothing here ever receives a secret: callers pass names, paths and URLs only.

use std::fmt::Display;
use std::io::{IsTerminal, Write};

/// `--color`: when to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// When the stream is a terminal and NO_COLOR is unset
    #[default]
    Auto,
    /// Always (even into a pipe, and despite NO_COLOR)
    Always,
    /// Never
    Never,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Ui {
    pub verbose: u8,
    pub quiet: bool,
    pub color: ColorChoice,
}

/// stdout was closed by its reader (`nixstore-auth list | head -1`): the command stops
/// quietly instead of panicking.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// An error with the fix to suggest, printed apart as `help: ...`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct WithHelp {
    pub message: String,
    pub help: String,
}

/// An error whose fix is `help` (printed on its own `help:` line).
pub fn error_with_help(message: impl Into<String>, help: impl Into<String>) -> anyhow::Error {
    WithHelp {
        message: message.into(),
        help: help.into(),
    }
    .into()
}

/// Causes shown without `-v`: the ones that usually say why; deeper ones are the libraries'.
pub const CAUSES_SHOWN: usize = 2;

/// The fix an error carries, if any (what `help:` shows).
pub fn help_of(err: &anyhow::Error) -> Option<&str> {
    err.chain()
        .find_map(|c| c.downcast_ref::<WithHelp>())
        .map(|h| h.help.as_str())
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

impl Ui {
    /// A Ui that prints nothing but errors (for checks whose notices the caller reports itself).
    pub fn silent() -> Ui {
        Ui {
            verbose: 0,
            quiet: true,
            color: ColorChoice::Never,
        }
    }

    /// A result on stdout, as given (no newline added). A closed stdout is [`StdoutClosed`].
    pub fn out(&self, text: impl Display) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        match write!(out, "{text}").and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
            other => Ok(other?),
        }
    }

    /// A line of result on stdout.
    pub fn outln(&self, text: impl Display) -> anyhow::Result<()> {
        self.out(format_args!("{text}\n"))
    }

    /// Progress and results worth telling unless `--quiet`.
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Always shown: something the user should act on.
    pub fn warn(&self, msg: impl AsRef<str>) {
        let prefix = self.paint("warning:", console::Color::Yellow);
        eprintln!("{prefix} {}", msg.as_ref());
    }

    /// Details for `--verbose`.
    pub fn debug(&self, msg: impl AsRef<str>) {
        if self.verbose > 0 {
            eprintln!(
                "{} {}",
                self.paint("debug:", console::Color::Cyan),
                msg.as_ref()
            );
        }
    }

    /// A progress line on stderr while something slow runs (`checking CACHE`): only on a
    /// terminal, never with `--quiet`; it disappears when dropped.
    pub fn spinner(&self) -> Option<Spinner> {
        if !show_progress(self.quiet, std::io::stderr().is_terminal()) {
            return None;
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.enable_steady_tick(std::time::Duration::from_millis(100));
        Some(Spinner(pb))
    }

    /// `text` coloured for stderr when colour is on for it.
    pub fn paint(&self, text: &str, color: console::Color) -> String {
        self.paint_on(Stream::Err, text, color)
    }

    /// `text` coloured for stdout when colour is on for it.
    pub fn paint_out(&self, text: &str, color: console::Color) -> String {
        self.paint_on(Stream::Out, text, color)
    }

    fn paint_on(&self, stream: Stream, text: &str, color: console::Color) -> String {
        let on = match self.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none()
                    && match stream {
                        Stream::Out => std::io::stdout().is_terminal(),
                        Stream::Err => std::io::stderr().is_terminal(),
                    }
            }
        };
        if on {
            // Forced: console would otherwise look at stdout for a warning meant for stderr.
            console::Style::new()
                .fg(color)
                .bold()
                .force_styling(true)
                .apply_to(text)
                .to_string()
        } else {
            text.to_string()
        }
    }

    /// Prints `err` on stderr: `error: ...`, `Caused by:` lines (the first [`CAUSES_SHOWN`],
    /// every cause with `-v`), and `help: ...` when the error carries a fix.
    pub fn error(&self, err: &anyhow::Error) {
        eprint!("{}", self.render_error(err));
    }

    fn render_error(&self, err: &anyhow::Error) -> String {
        let mut out = format!("{} {err}\n", self.paint("error:", console::Color::Red));
        let causes: Vec<String> = err.chain().skip(1).map(|c| c.to_string()).collect();
        let shown = if self.verbose > 0 {
            causes.len()
        } else {
            CAUSES_SHOWN
        };
        if !causes.is_empty() {
            out.push_str("\nCaused by:\n");
            for c in causes.iter().take(shown) {
                out.push_str(&format!("  {c}\n"));
            }
            if causes.len() > shown {
                out.push_str(&format!(
                    "  ({} more; `-v` shows them)\n",
                    causes.len() - shown
                ));
            }
        }
        if let Some(help) = help_of(err) {
            out.push_str(&format!(
                "\n{} {help}\n",
                self.paint("help:", console::Color::Green)
            ));
        }
        out
    }
}

fn show_progress(quiet: bool, stderr_is_terminal: bool) -> bool {
    !quiet && stderr_is_terminal
}

/// See [`Ui::spinner`].
pub struct Spinner(indicatif::ProgressBar);

impl Spinner {
    pub fn set(&self, msg: impl Into<std::borrow::Cow<'static, str>>) {
        self.0.set_message(msg);
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Whether we may ask the user something: a controlling terminal must exist.
pub fn has_tty() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn plain(verbose: u8) -> Ui {
        Ui {
            verbose,
            quiet: false,
            color: ColorChoice::Never,
        }
    }

    #[test]
    fn errors_print_the_chain_and_the_help_apart() {
        let err = Err::<(), _>(error_with_help("no session", "run `nixstore-auth login c`"))
            .context("cannot sign")
            .context("cannot read the bucket")
            .context("exec failed")
            .unwrap_err();
        assert_eq!(
            plain(0).render_error(&err),
            "error: exec failed\n\nCaused by:\n  cannot read the bucket\n  cannot sign\n  (1 more; `-v` shows them)\n\nhelp: run `nixstore-auth login c`\n"
        );
        assert_eq!(
            plain(1).render_error(&err),
            "error: exec failed\n\nCaused by:\n  cannot read the bucket\n  cannot sign\n  no session\n\nhelp: run `nixstore-auth login c`\n"
        );
        let simple = anyhow::anyhow!("unknown cache \"x\"");
        assert_eq!(
            plain(0).render_error(&simple),
            "error: unknown cache \"x\"\n"
        );
    }

    #[test]
    fn progress_shows_on_a_terminal_unless_quiet() {
        assert!(show_progress(false, true));
        assert!(!show_progress(true, true));
        assert!(!show_progress(false, false));
        assert!(Ui::silent().spinner().is_none());
    }

    #[test]
    fn colour_follows_the_choice() {
        let always = Ui {
            color: ColorChoice::Always,
            ..plain(0)
        };
        assert_ne!(always.paint("warning:", console::Color::Yellow), "warning:");
        assert_eq!(
            plain(0).paint("warning:", console::Color::Yellow),
            "warning:"
        );
    }
}
