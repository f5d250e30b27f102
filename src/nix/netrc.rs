//! netrc parsing and editing that keeps every byte it does not change.
//!
//! Nix hands the file to curl, so the reader follows curl (>= 7.84): whitespace-separated
//! tokens; `machine NAME`, `default`, then `login`, `password`, `account` with a value each;
//! keywords in any case; a token starting with `#` starts a comment to the end of the line;
//! `"..."` quotes a token with `\"`, `\\`, `\n`, `\r`, `\t` escapes and must close on its line.
//! `macdef NAME` ends the current entry and its body (the following lines up to an empty line)
//! is kept verbatim, never read as tokens.
//!
//! The text holds passwords: it lives in a [`Zeroizing`] buffer, `Debug` shows no password, and
//! no error message quotes a token from the file.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use super::lines::{LineEdit, LineSpan, append_line, eol_style, rebuild, split_lines};

/// An error about a netrc text or a value meant for it. Never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct NetrcError {
    /// 1-based line number, 0 when the error is not about a line of the file.
    pub line: usize,
    pub message: String,
}

impl NetrcError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        NetrcError {
            line,
            message: message.into(),
        }
    }
}

/// One `machine` (or `default`) entry, without its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `None` for the `default` entry.
    pub machine: Option<String>,
    pub login: Option<String>,
    pub has_password: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tok {
    start: usize,
    end: usize,
    /// 0-based line index.
    line: usize,
    quoted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct EntryPos {
    /// Token index of the `machine` / `default` keyword.
    first: usize,
    /// Token index of the entry's last token.
    last: usize,
    /// `None` for `default`.
    name: Option<usize>,
    login: Option<usize>,
    password: Option<usize>,
}

/// Positions only: no decoded value (and so no password) is kept outside the text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Scan {
    lines: Vec<LineSpan>,
    tokens: Vec<Tok>,
    entries: Vec<EntryPos>,
    /// The file ends inside a macro body: a line appended now would belong to the macro.
    ends_in_macdef: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Login,
    Password,
    Account,
}

impl Field {
    fn keyword(self) -> &'static str {
        match self {
            Field::Login => "login",
            Field::Password => "password",
            Field::Account => "account",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Keyword,
    /// The entry's host name; the line of the `machine` keyword.
    Name(usize, usize),
    /// A field's value; the line of its keyword.
    Value(Field, usize, usize),
}

/// curl's blanks between tokens (`\n` never occurs inside a line).
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

/// A token's value: the raw text, or for a quoted token the text between the quotes with its
/// escapes resolved.
fn decode(text: &str, tok: Tok) -> String {
    let raw = &text[tok.start..tok.end];
    if !tok.quoted {
        return raw.to_string();
    }
    let inner = raw
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn scan(text: &str) -> Result<Scan, NetrcError> {
    let bytes = text.as_bytes();
    let lines = split_lines(text);
    let mut tokens: Vec<Tok> = Vec::new();
    let mut entries: Vec<EntryPos> = Vec::new();
    let mut current: Option<usize> = None;
    let mut expect = Expect::Keyword;
    let mut in_macdef = false;

    for (li, l) in lines.iter().enumerate() {
        if in_macdef {
            // curl ends a macro at a line that is empty (or starts with CR).
            if l.start == l.end || bytes[l.start] == b'\r' {
                in_macdef = false;
            } else {
                continue;
            }
        }
        let mut i = l.start;
        while i < l.end {
            if is_blank(bytes[i]) {
                i += 1;
                continue;
            }
            if bytes[i] == b'#' {
                break;
            }
            let start = i;
            let quoted = bytes[i] == b'"';
            if quoted {
                i += 1;
                let mut closed = false;
                while i < l.end {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            closed = true;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                if !closed {
                    return Err(NetrcError::new(
                        li + 1,
                        "unterminated quoted token: a `\"` opens a token that does not close \
                         on the same line; add the closing `\"` or remove the opening one",
                    ));
                }
                if i < l.end && !is_blank(bytes[i]) {
                    return Err(NetrcError::new(
                        li + 1,
                        "a quoted token is directly followed by more text; curl would misread \
                         it, so put a space after the closing `\"`",
                    ));
                }
            } else {
                while i < l.end && !is_blank(bytes[i]) {
                    i += 1;
                }
            }
            let tok = Tok {
                start,
                end: i,
                line: li,
                quoted,
            };
            let t = tokens.len();
            tokens.push(tok);
            match expect {
                Expect::Name(e, _) => {
                    entries[e].name = Some(t);
                    entries[e].last = t;
                    expect = Expect::Keyword;
                }
                Expect::Value(field, e, _) => {
                    // Like curl, a later value overrides an earlier one.
                    match field {
                        Field::Login => entries[e].login = Some(t),
                        Field::Password => entries[e].password = Some(t),
                        Field::Account => {}
                    }
                    entries[e].last = t;
                    expect = Expect::Keyword;
                }
                Expect::Keyword => {
                    let word = decode(text, tok).to_ascii_lowercase();
                    match word.as_str() {
                        "machine" | "default" => {
                            entries.push(EntryPos {
                                first: t,
                                last: t,
                                name: None,
                                login: None,
                                password: None,
                            });
                            let e = entries.len() - 1;
                            current = Some(e);
                            if word == "machine" {
                                expect = Expect::Name(e, li);
                            }
                        }
                        "macdef" => {
                            // The rest of this line names the macro; its body follows.
                            current = None;
                            in_macdef = true;
                            break;
                        }
                        _ => {
                            if let Some(e) = current {
                                entries[e].last = t;
                                expect = match word.as_str() {
                                    "login" => Expect::Value(Field::Login, e, li),
                                    "password" => Expect::Value(Field::Password, e, li),
                                    "account" => Expect::Value(Field::Account, e, li),
                                    _ => Expect::Keyword,
                                };
                            }
                        }
                    }
                }
            }
        }
    }
    match expect {
        Expect::Keyword => {}
        Expect::Name(_, li) => {
            return Err(NetrcError::new(
                li + 1,
                "`machine` has no host name after it; complete or remove the entry",
            ));
        }
        Expect::Value(field, _, li) => {
            return Err(NetrcError::new(
                li + 1,
                format!(
                    "`{}` has no value after it; complete or remove the entry",
                    field.keyword()
                ),
            ));
        }
    }
    Ok(Scan {
        lines,
        tokens,
        entries,
        ends_in_macdef: in_macdef,
    })
}

/// Refuses a machine, login or password that curl would not read back as one plain token.
fn validate(what: &str, value: &str, secret: bool) -> Result<(), NetrcError> {
    match word_problem(value, secret) {
        Some(why) => Err(NetrcError::new(0, format!("the {what} {why}"))),
        None => Ok(()),
    }
}

/// Why `value` cannot be written as one plain netrc token that curl reads back unchanged
/// (`None`: it can), phrased to follow "the login", "the token", ... This is the one rule for
/// netrc values; a `secret` value's offending character is never named.
pub fn word_problem(value: &str, secret: bool) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".into());
    }
    if value.starts_with('#') {
        return Some("starts with '#', which curl reads as the start of a comment".into());
    }
    for c in value.chars() {
        // A password's characters are not named, not even the offending one.
        let which = || {
            if secret {
                String::new()
            } else {
                format!(" (U+{:04X})", c as u32)
            }
        };
        if c.is_whitespace() {
            return Some(format!(
                "contains whitespace{}, which would split it into several netrc tokens",
                which()
            ));
        }
        if c.is_control() {
            return Some(format!(
                "contains a control character{}, which netrc cannot hold",
                which()
            ));
        }
        if c == '"' {
            return Some(
                "contains a double quote (\"), which curl reads as a quoted token and older \
                 curl versions keep literally"
                    .into(),
            );
        }
    }
    None
}

/// A parsed netrc that can be edited without disturbing the bytes it does not change.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Netrc {
    text: Zeroizing<String>,
    scan: Scan,
}

impl fmt::Debug for Netrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netrc")
            .field("entries", &self.entries())
            .finish_non_exhaustive()
    }
}

impl Netrc {
    /// Parses netrc text the way curl does. Never panics; an unterminated quote or an entry cut
    /// short is an error naming the line (never quoting the file).
    pub fn parse(text: &str) -> Result<Netrc, NetrcError> {
        Ok(Netrc {
            scan: scan(text)?,
            text: Zeroizing::new(text.to_string()),
        })
    }

    /// The text, byte-identical to the parsed input when nothing was edited.
    pub fn to_text(&self) -> String {
        self.text.to_string()
    }

    fn value(&self, tok: Option<usize>) -> Option<String> {
        tok.and_then(|t| self.scan.tokens.get(t))
            .map(|&t| decode(&self.text, t))
    }

    fn entry(&self, e: &EntryPos) -> Entry {
        Entry {
            machine: self.value(e.name),
            login: self.value(e.login),
            has_password: e.password.is_some(),
        }
    }

    /// All entries in file order, `default` included.
    pub fn entries(&self) -> Vec<Entry> {
        self.scan.entries.iter().map(|e| self.entry(e)).collect()
    }

    /// Indexes of `machine`'s entries (host names compare case-insensitively, as in curl).
    fn find(&self, machine: &str) -> Vec<usize> {
        (0..self.scan.entries.len())
            .filter(|&i| {
                self.value(self.scan.entries[i].name)
                    .is_some_and(|n| n.eq_ignore_ascii_case(machine))
            })
            .collect()
    }

    /// `machine`'s own entry (the first, which is the one curl uses); never `default`.
    pub fn get(&self, machine: &str) -> Option<Entry> {
        self.find(machine)
            .first()
            .map(|&i| self.entry(&self.scan.entries[i]))
    }

    /// The password of `machine`'s own entry.
    pub fn password(&self, machine: &str) -> Option<Zeroizing<String>> {
        let i = *self.find(machine).first()?;
        self.value(self.scan.entries[i].password)
            .map(Zeroizing::new)
    }

    /// Sets `machine`'s login and password. An existing entry is replaced as a whole (later
    /// duplicates, which curl never reads, are removed with their stale passwords); otherwise
    /// `machine M login L password P` is added on a line of its own: at the end, or before a
    /// `default` entry, which would otherwise shadow it (an existing entry that `default`
    /// shadows is moved there too). Returns whether the text changed.
    pub fn upsert(
        &mut self,
        machine: &str,
        login: &str,
        password: &str,
    ) -> Result<bool, NetrcError> {
        validate("machine name", machine, false)?;
        validate("login", login, false)?;
        validate("password", password, true)?;
        // Edits run on a copy so that a failure leaves `self` untouched.
        let mut work = self.clone();
        let changed = work.upsert_validated(machine, login, password)?;
        *self = work;
        Ok(changed)
    }

    fn upsert_validated(
        &mut self,
        machine: &str,
        login: &str,
        password: &str,
    ) -> Result<bool, NetrcError> {
        let line = Zeroizing::new(format!(
            "machine {machine} login {login} password {password}"
        ));
        let mut matches = self.find(machine);
        let default_at = self.scan.entries.iter().position(|e| e.name.is_none());
        if let (Some(d), Some(&first)) = (default_at, matches.first())
            && d < first
        {
            // curl stops at the `default` entry before it: move the entry above `default`.
            for &e in matches.iter().rev() {
                let text = self.without_entry(e);
                self.replace_text(text)?;
            }
            matches.clear();
        }
        if let Some(&first) = matches.first() {
            let e = &self.scan.entries[first];
            let same = self.value(e.login).as_deref() == Some(login)
                && self
                    .value(e.password)
                    .map(Zeroizing::new)
                    .is_some_and(|p| p.as_str() == password);
            if matches.len() == 1 && same {
                return Ok(false);
            }
            // Later entries first, so earlier indexes stay valid.
            for &dup in matches[1..].iter().rev() {
                let text = self.without_entry(dup);
                self.replace_text(text)?;
            }
            let text = self.with_entry_replaced(first, &line);
            self.replace_text(text)?;
            return Ok(true);
        }
        let default = self.scan.entries.iter().find(|e| e.name.is_none()).cloned();
        let text = match default {
            Some(d) => self.with_line_before(d.first, &line),
            None if self.scan.ends_in_macdef => {
                return Err(NetrcError::new(
                    self.scan.lines.len(),
                    "the file ends inside a `macdef` body, so a new entry would become part of \
                     the macro; end the macro with an empty line first",
                ));
            }
            None => Zeroizing::new(append_line(&self.text, &line)),
        };
        self.replace_text(text)?;
        Ok(true)
    }

    /// Removes every entry of `machine` (never `default`). Returns whether the text changed.
    pub fn remove(&mut self, machine: &str) -> bool {
        let mut work = self.clone();
        let mut changed = false;
        for &e in self.find(machine).iter().rev() {
            let text = work.without_entry(e);
            if work.replace_text(text).is_err() {
                return false;
            }
            changed = true;
        }
        *self = work;
        changed
    }

    /// Byte range, first and last line of entry `e`.
    fn bounds(&self, e: usize) -> (usize, usize, usize, usize) {
        let pos = &self.scan.entries[e];
        let (a, b) = (self.scan.tokens[pos.first], self.scan.tokens[pos.last]);
        (a.start, b.end, a.line, b.line)
    }

    fn with_entry_replaced(&self, e: usize, new: &str) -> Zeroizing<String> {
        let (start, end, la, lb) = self.bounds(e);
        let lines = &self.scan.lines;
        let content = format!(
            "{}{new}{}",
            &self.text[lines[la].start..start],
            &self.text[end..lines[lb].end]
        );
        self.edited(la, lb, LineEdit::Replace(content))
    }

    fn without_entry(&self, e: usize) -> Zeroizing<String> {
        let (start, end, la, lb) = self.bounds(e);
        let lines = &self.scan.lines;
        let prefix = &self.text[lines[la].start..start];
        let suffix = &self.text[end..lines[lb].end];
        let rest = suffix.trim_start_matches(|c: char| c.is_ascii() && is_blank(c as u8));
        let alone_at_start = prefix.bytes().all(is_blank);
        // An entry with its lines to itself (maybe with a trailing comment) goes with them.
        let edit = if alone_at_start && (rest.is_empty() || rest.starts_with('#')) {
            LineEdit::Delete
        } else if rest.is_empty() {
            LineEdit::Replace(prefix.trim_end_matches([' ', '\t', '\r']).to_string())
        } else if alone_at_start || prefix.ends_with(|c: char| c.is_ascii() && is_blank(c as u8)) {
            LineEdit::Replace(format!("{prefix}{rest}"))
        } else {
            LineEdit::Replace(format!("{prefix} {rest}"))
        };
        self.edited(la, lb, edit)
    }

    /// Inserts `new` before token `t`: as a line of its own when `t` starts its line.
    fn with_line_before(&self, t: usize, new: &str) -> Zeroizing<String> {
        let tok = self.scan.tokens[t];
        let l = self.scan.lines[tok.line];
        let prefix = &self.text[l.start..tok.start];
        let content = if prefix.bytes().all(is_blank) {
            let eol = if l.has_eol() {
                &self.text[l.end..l.next]
            } else {
                eol_style(&self.text, &self.scan.lines)
            };
            format!("{new}{eol}{}", &self.text[l.start..l.end])
        } else {
            format!("{prefix}{new} {}", &self.text[tok.start..l.end])
        };
        self.edited(tok.line, tok.line, LineEdit::Replace(content))
    }

    /// The text with one edit applied; the edit's copy of the (secret) text is wiped after.
    fn edited(&self, first: usize, last: usize, edit: LineEdit) -> Zeroizing<String> {
        let mut edits = [(first, last, edit)];
        let out = Zeroizing::new(rebuild(&self.text, &self.scan.lines, &edits));
        if let LineEdit::Replace(content) = &mut edits[0].2 {
            content.zeroize();
        }
        out
    }

    fn replace_text(&mut self, text: Zeroizing<String>) -> Result<(), NetrcError> {
        // Our edits write only validated plain tokens, so the result always parses; if it ever
        // did not, keeping the old text is the safe failure.
        let scan = scan(&text).map_err(|e| {
            NetrcError::new(
                0,
                format!("internal error: the edited file would not parse ({e})"),
            )
        })?;
        self.text = text;
        self.scan = scan;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn netrc(text: &str) -> Netrc {
        Netrc::parse(text).unwrap()
    }

    fn entry(machine: Option<&str>, login: Option<&str>, has_password: bool) -> Entry {
        Entry {
            machine: machine.map(str::to_string),
            login: login.map(str::to_string),
            has_password,
        }
    }

    const SAMPLE: &str = "# my netrc\n\
        machine a.example login alice password pa\n\
        \n\
        MACHINE b.example\n\
        \x20 Login bob   # inline comment\n\
        \x20 password \"p b\\\"q\\\\\" account acct\n\
        macdef init\n\
        \x20 machine evil.example login x password y\n\
        \x20 \"unterminated in a macro is fine\n\
        \n\
        machine c.example login carol password pc # carol's\n\
        default login anonymous password guest\n";

    #[test]
    fn parse_reads_entries_and_keeps_bytes() {
        let n = netrc(SAMPLE);
        assert_eq!(n.to_text(), SAMPLE);
        assert_eq!(
            n.entries(),
            vec![
                entry(Some("a.example"), Some("alice"), true),
                entry(Some("b.example"), Some("bob"), true),
                entry(Some("c.example"), Some("carol"), true),
                entry(None, Some("anonymous"), true),
            ]
        );
        assert_eq!(n.password("b.example").unwrap().as_str(), "p b\"q\\");
        assert_eq!(n.password("B.Example").unwrap().as_str(), "p b\"q\\");
        assert!(
            n.get("evil.example").is_none(),
            "macro bodies are not tokens"
        );
        assert!(n.get("nowhere").is_none());
        assert!(n.password("nowhere").is_none());
    }

    #[test]
    fn empty_and_comment_only_texts_parse() {
        for text in ["", "\n", "# c", "  # c\r\n\r\n", "\t"] {
            let n = netrc(text);
            assert_eq!(n.to_text(), text);
            assert!(n.entries().is_empty());
        }
    }

    #[test]
    fn quoted_escapes_decode() {
        let n = netrc("machine \"h\" login \"a\\tb\" password \"x\\ny\\rz\\q\"\n");
        assert_eq!(n.get("h").unwrap().login.as_deref(), Some("a\tb"));
        assert_eq!(n.password("h").unwrap().as_str(), "x\ny\rzq");
    }

    #[test]
    fn a_hash_token_comments_out_the_rest_of_the_line() {
        let n = netrc("machine h login u # password p\n");
        assert_eq!(n.get("h"), Some(entry(Some("h"), Some("u"), false)));
        // Inside a token '#' is ordinary.
        let n = netrc("machine h login u password p#q\n");
        assert_eq!(n.password("h").unwrap().as_str(), "p#q");
    }

    #[test]
    fn entries_spread_over_lines_and_sharing_lines() {
        let n = netrc("machine a\n\n  login x\n# c\n password y machine b login z password w\n");
        assert_eq!(
            n.entries(),
            vec![
                entry(Some("a"), Some("x"), true),
                entry(Some("b"), Some("z"), true)
            ]
        );
        assert_eq!(n.password("a").unwrap().as_str(), "y");
        assert_eq!(n.password("b").unwrap().as_str(), "w");
    }

    #[test]
    fn a_macro_runs_to_an_empty_line_only() {
        // A whitespace-only line does not end the macro (curl 7.8x).
        let n = netrc(
            "macdef m\n  x\n   \nmachine hidden login a password b\n\nmachine seen login c password d",
        );
        assert!(n.get("hidden").is_none());
        assert!(n.get("seen").is_some());
        let n = netrc("macdef m\r\nbody\r\n\r\nmachine h login a password b\r\n");
        assert!(n.get("h").is_some());
    }

    #[test]
    fn syntax_errors_name_the_line_and_never_the_secret() {
        let cases = [
            (
                "machine h login u password \"s3cret\n",
                1,
                "unterminated quoted token",
            ),
            ("\n\nmachine h password \"s3cret\\\"\n", 3, "unterminated"),
            ("machine h password \"s3cret\\", 1, "unterminated"),
            ("machine h password \"s3\"cret\n", 1, "put a space after"),
            ("# c\nmachine", 2, "`machine` has no host name"),
            ("machine h login u password", 1, "`password` has no value"),
            ("machine h\r\nlogin", 2, "`login` has no value"),
        ];
        for (text, line, needle) in cases {
            let err = Netrc::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.message.contains(needle), "{text:?}: {err}");
            assert!(!err.to_string().contains("s3"), "{err}");
            assert!(!err.to_string().contains("cret"), "{err}");
        }
    }

    #[test]
    fn debug_never_shows_passwords() {
        let mut n = netrc(SAMPLE);
        n.upsert("d.example", "dave", "hunter2-SECRET").unwrap();
        let shown = format!("{n:?} {n:#?}");
        for secret in ["hunter2-SECRET", "guest", "p b", "q\\"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("d.example"));
    }

    #[test]
    fn upsert_appends_a_line_of_its_own() {
        let mut n = netrc("machine a login x password y\n");
        assert!(n.upsert("h.example", "u", "p").unwrap());
        assert_eq!(
            n.to_text(),
            "machine a login x password y\nmachine h.example login u password p\n"
        );
        let mut n = netrc("machine a login x password y");
        assert!(n.upsert("h", "u", "p").unwrap());
        assert_eq!(
            n.to_text(),
            "machine a login x password y\nmachine h login u password p"
        );
        assert!(n.remove("h"));
        assert_eq!(n.to_text(), "machine a login x password y");
        let mut n = netrc("# c\r\n");
        n.upsert("h", "u", "p").unwrap();
        assert_eq!(n.to_text(), "# c\r\nmachine h login u password p\r\n");
        let mut n = netrc("");
        n.upsert("h", "u", "p").unwrap();
        assert_eq!(n.to_text(), "machine h login u password p\n");
        assert_eq!(n.password("h").unwrap().as_str(), "p");
    }

    #[test]
    fn upsert_replaces_a_multi_line_entry_and_keeps_the_rest() {
        let mut n = netrc(SAMPLE);
        assert!(n.upsert("b.example", "bob2", "new").unwrap());
        assert_eq!(
            n.to_text(),
            SAMPLE.replace(
                "MACHINE b.example\n  Login bob   # inline comment\n  password \"p b\\\"q\\\\\" account acct",
                "machine b.example login bob2 password new"
            )
        );
        assert_eq!(n.password("b.example").unwrap().as_str(), "new");
        assert_eq!(n.entries().len(), 4);
    }

    #[test]
    fn upsert_keeps_a_trailing_comment_and_neighbours_on_the_line() {
        let mut n = netrc("machine c login carol password pc # carol's\n");
        n.upsert("c", "carol", "new").unwrap();
        assert_eq!(
            n.to_text(),
            "machine c login carol password new # carol's\n"
        );
        let mut n = netrc("machine a login x password y machine b login z password w\n");
        n.upsert("a", "x", "Y").unwrap();
        assert_eq!(
            n.to_text(),
            "machine a login x password Y machine b login z password w\n"
        );
    }

    #[test]
    fn upsert_with_the_same_values_changes_nothing() {
        let text = "machine h\n  login u\n  password p\n";
        let mut n = netrc(text);
        assert!(!n.upsert("h", "u", "p").unwrap());
        assert_eq!(n.to_text(), text);
        assert!(n.upsert("h", "u", "q").unwrap());
    }

    #[test]
    fn upsert_removes_stale_duplicates() {
        let mut n = netrc(
            "machine h login u password old1\nmachine x login a password b\nmachine H login v password old2\n",
        );
        assert!(n.upsert("h", "w", "new").unwrap());
        assert_eq!(
            n.to_text(),
            "machine h login w password new\nmachine x login a password b\n"
        );
    }

    #[test]
    fn upsert_goes_before_default_which_would_shadow_it() {
        let mut n = netrc("machine a login x password y\n  default login anon password guest\n");
        n.upsert("h", "u", "p").unwrap();
        assert_eq!(
            n.to_text(),
            "machine a login x password y\nmachine h login u password p\n  default login anon password guest\n"
        );
        assert!(n.remove("h"));
        assert_eq!(
            n.to_text(),
            "machine a login x password y\n  default login anon password guest\n"
        );
        let text = "machine a login x password y default login anon password guest";
        let mut n = netrc(text);
        n.upsert("h", "u", "p").unwrap();
        assert_eq!(
            n.to_text(),
            "machine a login x password y machine h login u password p default login anon password guest"
        );
        assert!(n.remove("h"));
        assert_eq!(n.to_text(), text);
    }

    #[test]
    fn upsert_moves_an_entry_that_default_shadows() {
        let mut n = netrc("default login anon password guest\nmachine h login u password p\n");
        assert!(n.upsert("h", "u", "p").unwrap());
        assert_eq!(
            n.to_text(),
            "machine h login u password p\ndefault login anon password guest\n"
        );
        assert!(!n.upsert("h", "u", "p").unwrap());
    }

    #[test]
    fn upsert_refuses_to_append_into_an_open_macro() {
        let text = "machine a login x password y\nmacdef m\n  cd /\n";
        let mut n = netrc(text);
        let err = n.upsert("h", "u", "p").unwrap_err();
        assert!(err.message.contains("macdef"), "{err}");
        assert_eq!(n.to_text(), text);
        // Closed macro: fine.
        let mut n = netrc("macdef m\n  cd /\n\n");
        n.upsert("h", "u", "p").unwrap();
        assert_eq!(
            n.to_text(),
            "macdef m\n  cd /\n\nmachine h login u password p\n"
        );
    }

    #[test]
    fn upsert_validates_without_leaking_the_password() {
        let mut n = netrc("");
        let cases = [
            ("", "u", "p", "machine name is empty"),
            ("a b", "u", "p", "machine name contains whitespace (U+0020)"),
            ("h", "u\tv", "p", "login contains whitespace (U+0009)"),
            ("h", "\"u\"", "p", "double quote"),
            ("h", "#u", "p", "starts with '#'"),
            ("h", "u", "", "password is empty"),
            ("h", "u", "SEC RET", "password contains whitespace,"),
            ("h", "u", "SEC\nRET", "password contains whitespace,"),
            (
                "h",
                "u",
                "SEC\u{1}RET",
                "password contains a control character,",
            ),
            ("h", "u", "SEC\"RET", "double quote"),
            ("h", "u", "#SECRET", "starts with '#'"),
        ];
        for (m, l, p, needle) in cases {
            let err = n.upsert(m, l, p).unwrap_err();
            assert!(err.message.contains(needle), "{m:?} {l:?}: {err}");
            assert!(!err.to_string().contains("SEC"), "{err}");
        }
        assert_eq!(n.to_text(), "");
    }

    #[test]
    fn remove_handles_each_layout() {
        let mut n = netrc(SAMPLE);
        assert!(n.remove("b.example"));
        let expected = SAMPLE.replace(
            "MACHINE b.example\n  Login bob   # inline comment\n  password \"p b\\\"q\\\\\" account acct\n",
            "",
        );
        assert_eq!(n.to_text(), expected);
        assert!(n.remove("c.example"));
        assert!(!n.to_text().contains("carol"));
        assert!(!n.remove("c.example"));
        assert!(!n.remove("nowhere"));

        let mut n = netrc("machine a login x password y machine b login z password w\n");
        assert!(n.remove("a"));
        assert_eq!(n.to_text(), "machine b login z password w\n");
        let mut n = netrc("machine a login x password y machine b login z password w\n");
        assert!(n.remove("b"));
        assert_eq!(n.to_text(), "machine a login x password y\n");

        let mut n = netrc("machine a login x password y\r\nmachine b\r\n login z\r\n password w");
        assert!(n.remove("b"));
        assert_eq!(n.to_text(), "machine a login x password y");
    }

    #[test]
    fn remove_leaves_default_and_macros() {
        let text = "machine h login u password p\nmacdef m\n  x\n\ndefault login a password b\n";
        let mut n = netrc(text);
        assert!(n.remove("h"));
        assert_eq!(n.to_text(), "macdef m\n  x\n\ndefault login a password b\n");
        assert_eq!(n.entries(), vec![entry(None, Some("a"), true)]);
    }

    // ---- property tests ----

    fn piece() -> impl Strategy<Value = String> {
        let host = "h[0-9]";
        let word = "[a-z0-9!.][a-z0-9#!.]{0,5}";
        prop_oneof![
            Just(String::new()),
            "[ \t]{0,2}#[^\r\n]{0,12}",
            (host, word, word).prop_map(|(h, l, p)| format!("machine {h} login {l} password {p}")),
            (host, word, word)
                .prop_map(|(h, l, p)| format!("machine {h}\n  login {l}\n\tpassword {p}  # c")),
            (host, word, word, host).prop_map(|(h, l, p, h2)| format!(
                "machine {h} login \"{l} x\" password \"{p}\\\"\" machine {h2} account a"
            )),
            Just("default login anon password guest".to_string()),
            Just("macdef init\n  machine h9 login no password no\n  \"open quote\n".to_string()),
        ]
    }

    fn netrc_text() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(piece(), 0..6),
            prop_oneof![Just("\n"), Just("\r\n")],
            prop::bool::ANY,
        )
            .prop_map(|(pieces, eol, final_nl)| {
                let mut s = pieces.join("\n");
                if final_nl && !s.is_empty() {
                    s.push('\n');
                }
                s.replace('\n', eol)
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            if let Ok(n) = Netrc::parse(&text) {
                let _ = n.entries();
                prop_assert_eq!(n.to_text(), text);
            }
        }

        #[test]
        fn parse_never_panics_on_near_miss_text(
            text in "(machine|login|password|macdef|default|\"|\\\\|#| |\t|\r|\n|x|é){0,30}",
        ) {
            if let Ok(mut n) = Netrc::parse(&text) {
                let _ = n.password("x");
                let _ = n.upsert("x", "u", "p");
                prop_assert!(Netrc::parse(&n.to_text()).is_ok());
            }
        }

        #[test]
        fn generated_texts_parse(text in netrc_text()) {
            let n = Netrc::parse(&text).unwrap();
            prop_assert_eq!(n.to_text(), text);
        }

        #[test]
        fn upsert_then_remove_restores_the_bytes(
            text in netrc_text(),
            machine in "(h[0-9]|new[0-9])",
            login in "[a-z]{1,5}",
            password in "[a-zA-Z0-9!#$%.]{1,10}",
        ) {
            let mut n = Netrc::parse(&text).unwrap();
            prop_assume!(n.get(&machine).is_none());
            prop_assume!(!password.starts_with('#'));
            let Ok(changed) = n.upsert(&machine, &login, &password) else {
                prop_assert!(n.scan.ends_in_macdef);
                return Ok(());
            };
            prop_assert!(changed);
            prop_assert!(n.password(&machine).is_some_and(|p| p.as_str() == password));
            prop_assert_eq!(n.get(&machine).unwrap().login, Some(login.clone()));
            let others: Vec<Entry> = Netrc::parse(&text).unwrap().entries();
            let mut now = n.entries();
            now.retain(|e| e.machine.as_deref() != Some(machine.as_str()));
            prop_assert_eq!(now, others);
            let mut reparsed = Netrc::parse(&n.to_text()).unwrap();
            prop_assert!(n.remove(&machine));
            prop_assert_eq!(n.to_text(), text.clone());
            prop_assert!(reparsed.remove(&machine));
            prop_assert_eq!(reparsed.to_text(), text);
        }

        #[test]
        fn upsert_is_idempotent_and_replaces(
            text in netrc_text(),
            machine in "(h[0-9]|new[0-9])",
            password in "[a-z0-9]{1,8}",
        ) {
            let mut once = Netrc::parse(&text).unwrap();
            if once.upsert(&machine, "me", &password).is_err() {
                return Ok(());
            }
            let mut twice = once.clone();
            prop_assert!(!twice.upsert(&machine, "me", &password).unwrap());
            prop_assert_eq!(&twice, &once);
            prop_assert_eq!(once.find(&machine).len(), 1);
            prop_assert!(once.password(&machine).is_some_and(|p| p.as_str() == password));
        }
    }
}
