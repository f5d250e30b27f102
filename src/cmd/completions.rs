//! `completions`, and the renderers behind the committed `completions/` and `man/` files.

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use super::{Cli, CompletionsArgs, Run};
use crate::ui::Ui;

impl Run for CompletionsArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        ui.out(format_args!("{}", completion_script(self.shell)))?;
        Ok(0)
    }
}

/// The static completion script for `shell`.
pub fn completion_script(shell: Shell) -> String {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "nixstore-auth", &mut buf);
    // Invariant: the script is made from our own (UTF-8) strings.
    String::from_utf8(buf).expect("clap_complete writes UTF-8")
}

/// The committed completion files: (file name under completions/, contents).
pub fn completion_files() -> Vec<(String, String)> {
    [
        (Shell::Bash, "nixstore-auth.bash"),
        (Shell::Zsh, "_nixstore-auth"),
        (Shell::Fish, "nixstore-auth.fish"),
        (Shell::Elvish, "nixstore-auth.elv"),
        (Shell::PowerShell, "_nixstore-auth.ps1"),
    ]
    .into_iter()
    .map(|(shell, name)| (name.to_string(), completion_script(shell)))
    .collect()
}

/// Man pages: `nixstore-auth.1` and one `nixstore-auth-SUB.1` per visible subcommand (nested
/// ones too), each with an EXAMPLES section taken from the command's after-help text.
pub fn man_pages() -> Vec<(String, String)> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    collect(&cmd, "nixstore-auth", &mut out);
    out
}

fn collect(cmd: &clap::Command, name: &str, out: &mut Vec<(String, String)>) {
    let cmd = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    out.push((format!("{name}.1"), render_man(&cmd)));
    let parent_examples = cmd.get_after_help().map(|h| h.to_string());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut sub = sub.clone();
        // A nested command (`secret set`) shows its parent's examples that use it.
        if let (None, Some(parent)) = (sub.get_after_help(), &parent_examples) {
            let needle = format!(" {} ", sub.get_name());
            let lines: Vec<&str> = parent
                .lines()
                .filter(|l| format!("{l} ").contains(&needle))
                .collect();
            if !lines.is_empty() {
                sub = sub.after_help(format!("Examples:\n{}", lines.join("\n")));
            }
        }
        collect(&sub, &format!("{name}-{}", sub.get_name()), out);
    }
}

fn render_man(cmd: &clap::Command) -> String {
    // The EXAMPLES section replaces clap_mangen's generic EXTRA heading.
    let examples = cmd.get_after_help().map(|h| h.to_string());
    let man = clap_mangen::Man::new(
        cmd.clone()
            .after_help(None::<&str>)
            .after_long_help(None::<&str>),
    )
    .date("")
    .source(format!("nixstore-auth {}", env!("CARGO_PKG_VERSION")))
    .manual("nixstore-auth manual");
    let mut buf = Vec::new();
    // Invariant: writing to a Vec cannot fail, and the page is made from our own UTF-8 text.
    man.render(&mut buf)
        .expect("rendering to memory cannot fail");
    let mut text = String::from_utf8(buf).expect("clap_mangen writes UTF-8");
    if let Some(ex) = examples {
        let body = ex.trim_start_matches("Examples:").trim_matches('\n');
        text.push_str(".SH EXAMPLES\n.nf\n");
        for line in body.lines() {
            let line = line.strip_prefix("  ").unwrap_or(line);
            // Escape roff: a leading dot or quote, and backslashes.
            let escaped = line.replace('\\', "\\e");
            if escaped.starts_with('.') || escaped.starts_with('\'') {
                text.push_str("\\&");
            }
            text.push_str(&escaped);
            text.push('\n');
        }
        text.push_str(".fi\n");
    }
    text
}
