//! `shell-init`: shell functions that run nix, nix-build, ... through `nixstore-auth exec`.
//!
//! Functions rather than aliases: arguments pass through untouched ("$@" / $argv), they work in
//! scripts that source the init, and `command nix` still reaches the real binary.
//!
//! A prompt hook tells, once, what the background service needs from a person (the notice the
//! proxy writes when only `nixstore-auth login CACHE` can renew a session), and that the
//! background proxy is down where no service manager restarts it. It only tests files (the
//! paths are fixed when the init code is made): no process is started per prompt.

use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

use super::{InitShell, Run, ShellInitArgs};
use crate::ui::Ui;

impl Run for ShellInitArgs {
    fn run(self, ui: &Ui) -> Result<i32> {
        let dirs = crate::config::Dirs::new()?;
        let rundir = crate::proxy::runtime_dir_of(&dirs);
        let hook = Hook {
            notice: crate::proxy::notice_file(&rundir),
            persistent: crate::service::marker::persistent_flag(&dirs),
            socket: rundir.join("proxy.sock"),
        };
        ui.out(format_args!(
            "{}",
            render(self.shell, &self.commands, Some(&hook))?
        ))?;
        Ok(0)
    }
}

/// The files the prompt hook tests.
pub struct Hook {
    /// What the background proxy wants the user to know (one line); `NOTICE.seen` marks it shown.
    pub notice: PathBuf,
    /// Present while the service runs without a service manager (`service install`).
    pub persistent: PathBuf,
    /// The proxy's control socket: present while it runs.
    pub socket: PathBuf,
}

/// The message when the background proxy is down.
const DOWN: &str = "nixstore-auth: the background proxy is down: plain nix commands go on without your S3 caches; start it with `nixstore-auth proxy start --persistent`";

/// `path` as one single-quoted word for sh/bash/zsh.
fn sh_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "'\\''"))
}

/// `path` as one single-quoted word for fish.
fn fish_quote(path: &Path) -> String {
    format!(
        "'{}'",
        path.to_string_lossy()
            .replace('\\', "\\\\")
            .replace('\'', "\\'")
    )
}

fn hook_sh(shell: InitShell, h: &Hook) -> String {
    let (n, flag, sock) = (
        sh_quote(&h.notice),
        sh_quote(&h.persistent),
        sh_quote(&h.socket),
    );
    let down = sh_quote(Path::new(DOWN));
    let register = match shell {
        InitShell::Zsh => "(( ${precmd_functions[(I)__nixstore_auth_prompt]} )) || precmd_functions+=(__nixstore_auth_prompt)\n".to_string(),
        _ => "case \";${PROMPT_COMMAND-};\" in *\";__nixstore_auth_prompt;\"*) ;; *) PROMPT_COMMAND=\"__nixstore_auth_prompt${PROMPT_COMMAND:+;$PROMPT_COMMAND}\" ;; esac\n".to_string(),
    };
    format!(
        "# Before each prompt: what the background proxy needs from you (once), or that it is down.\n\
         __nixstore_auth_prompt() {{\n\
         \x20 local n={n} l\n\
         \x20 if [[ -f $n && ( ! -e $n.seen || $n -nt $n.seen ) ]]; then\n\
         \x20   IFS= read -r l < \"$n\" && printf 'nixstore-auth: %s\\n' \"$l\" >&2\n\
         \x20   : > \"$n.seen\"\n\
         \x20 fi\n\
         \x20 if [[ -e {flag} && ! -S {sock} ]]; then\n\
         \x20   [[ -n ${{__nixstore_auth_down-}} ]] || printf '%s\\n' {down} >&2\n\
         \x20   __nixstore_auth_down=1\n\
         \x20 else\n\
         \x20   unset __nixstore_auth_down\n\
         \x20 fi\n\
         }}\n{register}"
    )
}

fn hook_fish(h: &Hook) -> String {
    let (n, flag, sock) = (
        fish_quote(&h.notice),
        fish_quote(&h.persistent),
        fish_quote(&h.socket),
    );
    let down = fish_quote(Path::new(DOWN));
    format!(
        "# Before each prompt: what the background proxy needs from you (once), or that it is down.\n\
         function __nixstore_auth_prompt --on-event fish_prompt\n\
         \x20   set -l n {n}\n\
         \x20   if test -f $n; and test $n -nt $n.seen\n\
         \x20       read -l line < $n; and printf 'nixstore-auth: %s\\n' $line >&2\n\
         \x20       true > $n.seen\n\
         \x20   end\n\
         \x20   if test -e {flag}; and not test -S {sock}\n\
         \x20       set -q __nixstore_auth_down; or printf '%s\\n' {down} >&2\n\
         \x20       set -g __nixstore_auth_down 1\n\
         \x20   else\n\
         \x20       set -e __nixstore_auth_down\n\
         \x20   end\n\
         end\n"
    )
}

/// The init code for `shell`, wrapping `commands`, with the prompt hook when given.
pub fn render(shell: InitShell, commands: &[String], hook: Option<&Hook>) -> Result<String> {
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
            if let Some(h) = hook {
                out.push_str(&hook_sh(shell, h));
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
            if let Some(h) = hook {
                out.push_str(&hook_fish(h));
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
        let t = render(InitShell::Bash, &["nix".into(), "nix-build".into()], None).unwrap();
        assert!(t.contains("nix() { command nixstore-auth exec -- nix \"$@\"; }"));
        assert!(t.contains("nix-build() { command nixstore-auth exec -- nix-build \"$@\"; }"));
        let f = render(InitShell::Fish, &["nix".into()], None).unwrap();
        assert!(f.contains("command nixstore-auth exec -- nix $argv"));
    }

    #[test]
    fn refuses_names_that_would_inject_code() {
        for bad in ["nix;rm -rf ~", "$(x)", "-x", "", "a b"] {
            assert!(
                render(InitShell::Zsh, &[bad.to_string()], None).is_err(),
                "{bad}"
            );
        }
    }

    /// The hook in the real shells (no tmux: an interactive bash or zsh reading its commands
    /// from a pipe still runs its prompt hooks; fish gets its prompt event emitted): the notice is shown once, the down line once while
    /// the flag exists and the socket does not. Skips a shell that is not installed, unless CI.
    #[test]
    fn the_prompt_hook_tells_once_in_each_shell() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("it's here");
        std::fs::create_dir_all(&d).unwrap();
        let hook = Hook {
            notice: d.join("notice"),
            persistent: d.join("service-persistent"),
            socket: d.join("proxy.sock"),
        };
        for (shell, argv) in [
            (
                InitShell::Bash,
                &["bash", "--norc", "--noprofile", "-i"][..],
            ),
            (InitShell::Zsh, &["zsh", "-f", "-i"][..]),
            (InitShell::Fish, &["fish", "--no-config", "-i"][..]),
        ] {
            let _ = std::fs::remove_file(d.join("notice.seen"));
            std::fs::write(
                &hook.notice,
                "cache c needs you: run `nixstore-auth login c`\n",
            )
            .unwrap();
            std::fs::write(&hook.persistent, "").unwrap();
            let init = render(shell, &["nix".into()], Some(&hook)).unwrap();
            // Loaded as an rc file would load it (`source`), then three prompts.
            let file = dir.path().join(format!("init-{}", argv[0]));
            std::fs::write(&file, init).unwrap();
            // fish runs no prompt for commands from a pipe: the event is emitted as its
            // prompt would (the function is registered with `--on-event fish_prompt`).
            let prompt = if shell == InitShell::Fish {
                "emit fish_prompt\n"
            } else {
                "true\n"
            };
            let script = format!("source {}\n{}exit\n", file.display(), prompt.repeat(3));
            let out = match std::process::Command::new(argv[0])
                .args(&argv[1..])
                .env_clear()
                .env("PATH", "/usr/bin:/bin")
                .env("HOME", dir.path())
                .env("TERM", "dumb")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
            {
                Ok(mut child) => {
                    use std::io::Write;
                    child
                        .stdin
                        .take()
                        .unwrap()
                        .write_all(script.as_bytes())
                        .unwrap();
                    child.wait_with_output().unwrap()
                }
                Err(_) if std::env::var("CI").is_err() => {
                    eprintln!("skipping {}: not installed", argv[0]);
                    continue;
                }
                Err(e) => panic!("{}: {e}", argv[0]),
            };
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                err.matches("nixstore-auth: cache c needs you").count(),
                1,
                "{}: {err}",
                argv[0]
            );
            assert_eq!(
                err.matches("the background proxy is down").count(),
                1,
                "{}: {err}",
                argv[0]
            );
            assert!(d.join("notice.seen").exists(), "{}", argv[0]);
        }
    }
}
