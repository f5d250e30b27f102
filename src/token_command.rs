//! `use --token-command 'CMD ARGS'`: a command that prints a cache's token, like AWS's
//! `credential_process`. The line is split into words as a POSIX shell would (quotes and
//! backslashes honoured) but no shell runs it; it runs as the user, with no input. Its output is
//! held in memory only ([`CommandToken`]): for the cache's `token-ttl`, or until the cache
//! refuses it, then the command runs again, once per refusal however many requests saw it.

use anyhow::{Context, Result, bail};
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use zeroize::Zeroizing;

use crate::secret::Token;

/// The default `token-ttl`: how long a command's token is used before the command runs again.
pub const DEFAULT_TTL: u64 = 300;
/// The longest `token-ttl` config.toml may give (a day): a longer-lived token needs no command.
pub const MAX_TTL: u64 = 86_400;
/// How long the command may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// The most output read from it: a token, not a file.
const MAX_OUTPUT: u64 = 64 * 1024;

/// A checked command line: its words.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenCommand {
    line: String,
    words: Vec<String>,
}

impl std::fmt::Debug for TokenCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenCommand({:?})", self.program())
    }
}

impl TokenCommand {
    /// Splits and checks `line` (the command line's and config.toml's one rule).
    pub fn parse(line: &str) -> Result<TokenCommand> {
        let words = split(line)?;
        Ok(TokenCommand {
            line: line.to_string(),
            words,
        })
    }

    /// The line as given (what config.toml records).
    pub fn line(&self) -> &str {
        &self.line
    }

    /// The program (the first word): what messages name, never the arguments.
    pub fn program(&self) -> &str {
        &self.words[0]
    }

    /// Runs the command now and returns the token it printed (surrounding whitespace trimmed).
    /// Errors name the program and its status, and at most a line of what it wrote to stderr;
    /// never its output.
    pub fn run(&self) -> Result<Token> {
        let prog = self.program();
        let mut child = Command::new(prog)
            .args(&self.words[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run the token command {prog:?}"))?;
        let (mut out, mut err) = match (child.stdout.take(), child.stderr.take()) {
            (Some(o), Some(e)) => (o, e),
            // Invariant: both were asked for as pipes just above.
            _ => bail!("the token command {prog:?} has no output pipes"),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Zeroizing::new(Vec::new());
            let read = (&mut out).take(MAX_OUTPUT + 1).read_to_end(&mut buf);
            // The receiver may have given up already (timeout): nothing to tell then.
            let _ = tx.send(read.map(|_| buf));
        });
        let errors = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut err).take(4096).read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        });
        let output = match rx.recv_timeout(TIMEOUT) {
            Ok(read) => read.with_context(|| format!("cannot read the token command {prog:?}"))?,
            Err(_) => {
                // Best effort: it may have exited meanwhile.
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the token command {prog:?} did not finish within {} s",
                    TIMEOUT.as_secs()
                );
            }
        };
        let status = child
            .wait()
            .with_context(|| format!("cannot wait for the token command {prog:?}"))?;
        let stderr = errors.join().unwrap_or_default();
        let first = stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| l.chars().take(200).collect::<String>());
        if !status.success() {
            let why = first.map(|l| format!(": {l}")).unwrap_or_default();
            bail!("the token command {prog:?} failed ({status}){why}");
        }
        if output.len() as u64 > MAX_OUTPUT {
            bail!("the token command {prog:?} printed more than {MAX_OUTPUT} bytes");
        }
        let text = std::str::from_utf8(&output)
            .with_context(|| format!("the token command {prog:?} printed something not UTF-8"))?;
        let token = Zeroizing::new(text.trim().to_string());
        if token.is_empty() {
            bail!("the token command {prog:?} printed nothing");
        }
        Token::new(token).with_context(|| format!("the token command {prog:?} printed a token"))
    }
}

/// Splits a command line into words as a POSIX shell would, without expanding anything: `'...'`
/// is literal, `"..."` honours `\` before `$`, `` ` ``, `"`, `\`; outside quotes `\` takes the
/// next character. What only a shell would act on (pipes, `;`, `&`, redirections, `$`, `` ` ``,
/// globs are not among them) is refused unquoted, since no shell runs the command.
pub fn split(line: &str) -> Result<Vec<String>> {
    if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
        bail!("the token command contains the control character {c:?}");
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => bail!("the token command has an unclosed single quote"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('$' | '`' | '"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => bail!("the token command has an unclosed double quote"),
                        },
                        Some(c @ ('$' | '`')) => bail!(
                            "the token command uses {c:?} inside double quotes, which only a shell expands; no shell runs it (use 'sh -c ...' if you need one)"
                        ),
                        Some(c) => word.push(c),
                        None => bail!("the token command has an unclosed double quote"),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => bail!("the token command ends with a lone backslash"),
            },
            '|' | '&' | ';' | '<' | '>' | '(' | ')' | '$' | '`' => bail!(
                "the token command uses {c:?}, which only a shell understands; no shell runs it (quote it, or use 'sh -c ...' if you need one)"
            ),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() || words[0].is_empty() {
        bail!("the token command is empty");
    }
    Ok(words)
}

/// A command's token held in memory, with the run that produced it.
struct Held {
    token: Token,
    fetched: i64,
    run: u64,
}

/// Whether the held token (fetched at `fetched`) may still be used at `now`.
pub fn still_fresh(fetched: i64, now: i64, ttl: u64) -> bool {
    // A clock that went back counts as fresh: the token is at most as old as it says.
    now.saturating_sub(fetched) < ttl as i64
}

/// One cache's command token: run at first use, again after `ttl` seconds or after the cache
/// refused the token of the latest run. Concurrent callers wait for one run.
pub struct CommandToken {
    command: TokenCommand,
    ttl: u64,
    held: Mutex<(Option<Held>, u64)>,
}

impl CommandToken {
    pub fn new(command: TokenCommand, ttl: u64) -> CommandToken {
        CommandToken {
            command,
            ttl,
            held: Mutex::new((None, 0)),
        }
    }

    pub fn command(&self) -> &TokenCommand {
        &self.command
    }

    /// The token to use now and the run it came from (to pass to [`CommandToken::refused`]).
    /// Blocking: it may run the command.
    pub fn get(&self, now: i64) -> Result<(Token, u64)> {
        let mut guard = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let (held, runs) = &mut *guard;
        if let Some(h) = held.as_ref()
            && still_fresh(h.fetched, now, self.ttl)
        {
            return Ok((h.token.clone(), h.run));
        }
        *held = None;
        *runs += 1;
        let token = self.command.run()?;
        *held = Some(Held {
            token: token.clone(),
            fetched: now,
            run: *runs,
        });
        Ok((token, *runs))
    }

    /// The cache refused the token of `run`: the next [`CommandToken::get`] runs the command
    /// again, unless another request already caused a newer run.
    pub fn refused(&self, run: u64) {
        let mut guard = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0.as_ref().is_some_and(|h| h.run == run) {
            guard.0 = None;
        }
    }

    /// How many times the command ran.
    pub fn runs(&self) -> u64 {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_a_shell_without_one() {
        let ok: &[(&str, &[&str])] = &[
            ("gh auth token", &["gh", "auth", "token"]),
            ("  cat   /run/t  ", &["cat", "/run/t"]),
            ("cat '/a b/t'", &["cat", "/a b/t"]),
            ("cat \"/a b/t\"", &["cat", "/a b/t"]),
            ("echo a\\ b", &["echo", "a b"]),
            ("echo 'x'\"y\"z", &["echo", "xyz"]),
            (
                "echo \"\\$HOME \\\" \\\\ \\n\"",
                &["echo", "$HOME \" \\ \\n"],
            ),
            ("echo '$HOME|;&'", &["echo", "$HOME|;&"]),
            ("echo ''", &["echo", ""]),
            ("echo \\|", &["echo", "|"]),
            ("vault\tread", &["vault", "read"]),
            ("attic *", &["attic", "*"]),
        ];
        for (line, want) in ok {
            assert_eq!(split(line).unwrap(), *want, "{line}");
        }
        let bad = [
            ("", "empty"),
            ("   ", "empty"),
            ("''", "empty"),
            ("cat 'x", "unclosed single quote"),
            ("cat \"x", "unclosed double quote"),
            ("cat x\\", "lone backslash"),
            ("cat t | jq .token", "'|'"),
            ("a; b", "';'"),
            ("a && b", "'&'"),
            ("cat < f", "'<'"),
            ("echo $TOKEN", "'$'"),
            ("echo `id`", "'`'"),
            ("echo \"$TOKEN\"", "inside double quotes"),
            ("echo $(id)", "'$'"),
            ("a\nb", "control character"),
            ("a\0b", "control character"),
        ];
        for (line, needle) in bad {
            let e = split(line).unwrap_err().to_string();
            assert!(e.contains(needle), "{line:?}: {e}");
        }
    }

    #[test]
    fn freshness_follows_the_ttl() {
        // (fetched, now, ttl) -> fresh
        let rows = [
            (100, 100, 300, true),
            (100, 399, 300, true),
            (100, 400, 300, false),
            (100, 50, 300, true),
            (100, 101, 1, false),
        ];
        for (fetched, now, ttl, want) in rows {
            assert_eq!(
                still_fresh(fetched, now, ttl),
                want,
                "{fetched} {now} {ttl}"
            );
        }
    }

    fn counting_command(dir: &std::path::Path) -> TokenCommand {
        // Prints token-N where N counts its runs (in a file of the test's own).
        let script = dir.join("tok.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\nn=$(cat \"$1\" 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > \"$1\"\necho token-$n\n",
        )
        .unwrap();
        let count = dir.join("count");
        TokenCommand::parse(&format!("sh '{}' '{}'", script.display(), count.display())).unwrap()
    }

    #[test]
    fn the_token_is_held_for_the_ttl_and_renewed_once_per_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let c = CommandToken::new(counting_command(dir.path()), 300);
        let (t1, r1) = c.get(1000).unwrap();
        assert_eq!(t1.as_str(), "token-1");
        // Held for the ttl: no new run.
        assert_eq!(c.get(1299).unwrap().0.as_str(), "token-1");
        assert_eq!(c.runs(), 1);
        // Two requests saw the same token refused: one new run.
        c.refused(r1);
        let (t2, r2) = c.get(1300).unwrap();
        c.refused(r1);
        assert_eq!(c.get(1300).unwrap().0.as_str(), "token-2");
        assert_eq!((t2.as_str(), c.runs()), ("token-2", 2));
        // After the ttl: a new run.
        assert_eq!(c.get(1600).unwrap().0.as_str(), "token-3");
        c.refused(r2);
        assert_eq!(c.runs(), 3);
    }

    #[test]
    fn failures_name_the_program_never_the_output() {
        let fails = TokenCommand::parse("sh -c 'echo SECRETOUT; echo oops >&2; exit 3'").unwrap();
        let e = format!("{:#}", fails.run().unwrap_err());
        assert!(e.contains("\"sh\"") && e.contains("oops"), "{e}");
        assert!(!e.contains("SECRETOUT"), "{e}");
        let spaced = TokenCommand::parse("echo 'two words'").unwrap();
        let e = format!("{:#}", spaced.run().unwrap_err());
        assert!(e.contains("whitespace") && !e.contains("two words"), "{e}");
        let empty = TokenCommand::parse("true").unwrap();
        assert!(format!("{:#}", empty.run().unwrap_err()).contains("printed nothing"));
        let missing = TokenCommand::parse("/nonexistent/tok").unwrap();
        assert!(format!("{:#}", missing.run().unwrap_err()).contains("cannot run"));
        assert_eq!(
            format!("{:?}", TokenCommand::parse("x --secret y").unwrap()),
            "TokenCommand(\"x\")"
        );
    }
}
