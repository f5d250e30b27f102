//! Messages to the user on stderr, honouring `--verbose` and `--quiet`.
//!
//! Nothing here ever receives a secret: callers pass names, paths and URLs only.

use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, Default)]
pub struct Ui {
    pub verbose: u8,
    pub quiet: bool,
}

impl Ui {
    /// Progress and results worth telling unless `--quiet`.
    pub fn info(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", msg.as_ref());
        }
    }

    /// Always shown: something the user should act on.
    pub fn warn(&self, msg: impl AsRef<str>) {
        let prefix = paint("warning:", console::Color::Yellow);
        eprintln!("{prefix} {}", msg.as_ref());
    }

    /// Details for `--verbose`.
    pub fn debug(&self, msg: impl AsRef<str>) {
        if self.verbose > 0 {
            eprintln!("{} {}", paint("debug:", console::Color::Cyan), msg.as_ref());
        }
    }
}

/// Colours `text` when stderr is a terminal and NO_COLOR is unset.
pub fn paint(text: &str, color: console::Color) -> String {
    if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        console::style(text).fg(color).bold().to_string()
    } else {
        text.to_string()
    }
}

/// Colours `text` for stdout when stdout is a terminal and NO_COLOR is unset.
pub fn paint_out(text: &str, color: console::Color) -> String {
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        console::style(text).fg(color).bold().to_string()
    } else {
        text.to_string()
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
