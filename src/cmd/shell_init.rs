//! `shell-init`: shell functions that run nix, nix-build, ... through `nixstore-auth exec`.
//!
//! Functions rather than aliases: arguments pass through untouched ("$@" / $argv), they work in
//! scripts that source the init, and `command nix` still reaches the real binary.

use anyhow::{Result, bail};

use super::{InitShell, Run, ShellInitArgs};
use crate::ui::Ui;

impl Run for ShellInitArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        ui.out(format_args!("{}", render(self.shell, &self.commands)?))?;
        Ok(0)
    }
}

/// The init code for `shell`, wrapping `commands`.
pub fn render(shell: InitShell, commands: &[String]) -> Result<String> {
    for c in commands {
        // The name is pasted into shell code: allow only what command names are made of.
        if c.is_empty()
            || !c
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
            || c.starts_with('-')
        {
            bail!("--commands: {c:?} is not a plain command name");
        }
    }
    let mut out = String::from(
        "# nixstore-auth shell integration: Nix commands run through `nixstore-auth exec`.\n",
    );
    match shell {
        InitShell::Bash | InitShell::Zsh => {
            out.push_str(
                "# Load with: eval \"$(nixstore-auth shell-init SHELL)\"; bypass with: command nix ...\n",
            );
            for c in commands {
                // `unalias` first: a function cannot be defined over an alias of the same name.
                out.push_str(&format!(
                    "unalias {c} 2>/dev/null\n{c}() {{ command nixstore-auth exec -- {c} \"$@\"; }}\n"
                ));
            }
        }
        InitShell::Fish => {
            out.push_str(
                "# Load with: nixstore-auth shell-init fish | source; bypass with: command nix ...\n",
            );
            for c in commands {
                out.push_str(&format!(
                    "function {c} --wraps {c} --description '{c} through nixstore-auth exec'\n    command nixstore-auth exec -- {c} $argv\nend\n"
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_each_command_with_arguments_untouched() {
        let t = render(InitShell::Bash, &["nix".into(), "nix-build".into()]).unwrap();
        assert!(t.contains("nix() { command nixstore-auth exec -- nix \"$@\"; }"));
        assert!(t.contains("nix-build() { command nixstore-auth exec -- nix-build \"$@\"; }"));
        let f = render(InitShell::Fish, &["nix".into()]).unwrap();
        assert!(f.contains("command nixstore-auth exec -- nix $argv"));
    }

    #[test]
    fn refuses_names_that_would_inject_code() {
        for bad in ["nix;rm -rf ~", "$(x)", "-x", "", "a b"] {
            assert!(render(InitShell::Zsh, &[bad.to_string()]).is_err(), "{bad}");
        }
    }
}
