//! nix.conf parsing and editing that keeps every byte it does not change (the line model it
//! edits with is in `lines.rs`, setting names and aliases in `names.rs`).
//!
//! The reader mirrors Nix's own (libutil `applyConfig`): the file is split on `\n`, a `#` anywhere
//! starts a comment, the rest is split on space, tab and CR; an empty result is ignored,
//! `include PATH` / `!include PATH` include another file, and anything else must be
//! `NAME = VALUE...` with `=` as the second token. Every other line is "illegal" for Nix, so it
//! is an error here too (with its line number).
//!
//! Edits work on whole lines of the original text: unedited lines (comments, blank lines,
//! trailing whitespace, CRLF, a missing final newline) come back byte for byte, and an appended
//! line can be removed again to give the original bytes back.

use super::lines::{LineEdit, LineSpan, append_line, rebuild, split_lines};
use super::names::{Form, canonical_name, form_of};

/// An error about a nix.conf text or a value meant for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ConfError {
    /// 1-based line number, 0 when the error is not about a line of the file.
    pub line: usize,
    pub message: String,
}

impl ConfError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        ConfError {
            line,
            message: message.into(),
        }
    }
}

/// An `include PATH` or `!include PATH` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub path: String,
    /// `!include`: Nix ignores a missing file.
    pub optional: bool,
    /// 1-based.
    pub line: usize,
}

/// One line that sets a setting in some form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence {
    /// 1-based.
    pub line: usize,
    /// The key as written, e.g. `extra-substituters` or `binary-caches`.
    pub key: String,
    pub values: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Settings: names, aliases, validation.

fn describe_char(c: char) -> String {
    match c {
        '\n' => "a newline (\\n)".to_string(),
        '\r' => "a carriage return (\\r)".to_string(),
        '\t' => "a tab (\\t)".to_string(),
        ' ' => "a space".to_string(),
        '#' => "'#'".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", c as u32),
        c => format!("the whitespace character U+{:04X}", c as u32),
    }
}

fn char_problem(c: char) -> Option<&'static str> {
    match c {
        '\n' | '\r' => Some("it would end the line and let the rest be read as another setting"),
        '#' => Some("nix.conf treats '#' as the start of a comment, anywhere on a line"),
        c if c.is_control() => Some("control characters have no place in nix.conf"),
        _ => None,
    }
}

/// Refuses a single list item (a cache URL, a public key) that could break or inject settings:
/// empty, newline, CR, `#`, any control character, or any whitespace (Nix splits values on it).
pub fn validate_value(value: &str) -> Result<(), ConfError> {
    if value.is_empty() {
        return Err(ConfError::new(0, "the value is empty"));
    }
    for c in value.chars() {
        if let Some(why) = char_problem(c) {
            return Err(ConfError::new(
                0,
                format!("the value contains {}: {why}; remove it", describe_char(c)),
            ));
        }
        if c.is_whitespace() {
            return Err(ConfError::new(
                0,
                format!(
                    "the value contains {}: Nix splits values on whitespace, so one item cannot \
                     contain it; pass each item separately",
                    describe_char(c)
                ),
            ));
        }
    }
    Ok(())
}

/// Refuses a scalar value (e.g. a `netrc-file` path) that could break or inject settings:
/// newline, CR, `#`, any control character (tabs too), or leading/trailing whitespace (Nix would
/// drop it). Inner spaces are allowed; Nix joins the words with one space. Empty is allowed.
pub fn validate_scalar(value: &str) -> Result<(), ConfError> {
    for c in value.chars() {
        if let Some(why) = char_problem(c) {
            return Err(ConfError::new(
                0,
                format!("the value contains {}: {why}; remove it", describe_char(c)),
            ));
        }
        if c.is_whitespace() && c != ' ' {
            return Err(ConfError::new(
                0,
                format!(
                    "the value contains {}; only plain spaces may separate words",
                    describe_char(c)
                ),
            ));
        }
    }
    if value.starts_with(' ') || value.ends_with(' ') {
        return Err(ConfError::new(
            0,
            "the value starts or ends with a space, which Nix would drop; trim it",
        ));
    }
    Ok(())
}

/// A setting name we are willing to write.
fn validate_name(name: &str) -> Result<(), ConfError> {
    if name.is_empty() {
        return Err(ConfError::new(0, "the setting name is empty"));
    }
    if name == "include" || name == "!include" {
        return Err(ConfError::new(
            0,
            format!("`{name}` is a nix.conf directive, not a setting name"),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '#' || *c == '=')
    {
        return Err(ConfError::new(
            0,
            format!(
                "the setting name contains {}, which nix.conf cannot hold in a name",
                if c == '=' {
                    "'='".to_string()
                } else {
                    describe_char(c)
                }
            ),
        ));
    }
    Ok(())
}

/// A token is echoed in an error only if it looks like a setting name: a malformed line could
/// hold a secret (e.g. an `access-tokens` value), and errors end up on screens and in logs.
fn shown(token: &str) -> Option<&str> {
    (token.len() <= 64
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.!".contains(c)))
    .then_some(token)
}

// ---------------------------------------------------------------------------------------------
// The document.

type Range = (usize, usize);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Blank, whitespace or comment only.
    Empty,
    Include {
        optional: bool,
        path: Range,
    },
    Setting {
        key: Range,
        eq: Range,
        values: Vec<Range>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ConfLine {
    span: LineSpan,
    kind: Kind,
}

/// A parsed nix.conf that can be edited without disturbing the bytes it does not change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NixConf {
    text: String,
    lines: Vec<ConfLine>,
}

/// Nix's token separators (`tokenizeString` defaults; `\n` never occurs inside a line).
fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn tokenize(text: &str, span: LineSpan) -> Vec<Range> {
    let bytes = text.as_bytes();
    let end = bytes[span.start..span.end]
        .iter()
        .position(|&b| b == b'#')
        .map_or(span.end, |i| span.start + i);
    let mut out = Vec::new();
    let mut i = span.start;
    while i < end {
        if is_sep(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < end && !is_sep(bytes[i]) {
            i += 1;
        }
        out.push((start, i));
    }
    out
}

fn parse_line(text: &str, span: LineSpan, number: usize) -> Result<Kind, ConfError> {
    let toks = tokenize(text, span);
    let tok = |r: Range| &text[r.0..r.1];
    let Some(&first) = toks.first() else {
        return Ok(Kind::Empty);
    };
    let name = tok(first);
    let illegal = |detail: String| {
        ConfError::new(
            number,
            format!(
                "illegal configuration line: {detail} (Nix accepts `name = value`, \
                 `include PATH` and `!include PATH`; fix or comment out the line)"
            ),
        )
    };
    if name == "include" || name == "!include" {
        if toks.len() != 2 {
            return Err(illegal(format!(
                "`{name}` takes exactly one path without spaces, found {} words",
                toks.len() - 1
            )));
        }
        return Ok(Kind::Include {
            optional: name == "!include",
            path: toks[1],
        });
    }
    if toks.len() < 2 || tok(toks[1]) != "=" {
        let glued = name.contains('=') || toks.get(1).is_some_and(|&t| tok(t).starts_with('='));
        let detail = if glued {
            let key = name.split('=').next().unwrap_or("");
            match shown(key) {
                Some(k) if !k.is_empty() => {
                    format!("put spaces around `=`, as in `{k} = VALUE`")
                }
                _ => "put spaces around `=`".to_string(),
            }
        } else {
            match shown(name) {
                Some(k) => format!("`{k}` is not followed by ` = `"),
                None => "the line is not `name = value`".to_string(),
            }
        };
        return Err(illegal(detail));
    }
    Ok(Kind::Setting {
        key: first,
        eq: toks[1],
        values: toks[2..].to_vec(),
    })
}

impl NixConf {
    /// Parses nix.conf text the way Nix does. Never panics; garbage lines are an error naming
    /// the line.
    pub fn parse(text: &str) -> Result<NixConf, ConfError> {
        let mut lines = Vec::new();
        for (i, span) in split_lines(text).into_iter().enumerate() {
            let kind = parse_line(text, span, i + 1)?;
            lines.push(ConfLine { span, kind });
        }
        Ok(NixConf {
            text: text.to_string(),
            lines,
        })
    }

    /// The text, byte-identical to the parsed input when nothing was edited.
    pub fn to_text(&self) -> String {
        self.text.clone()
    }

    fn slice(&self, r: Range) -> &str {
        &self.text[r.0..r.1]
    }

    fn settings(&self) -> impl Iterator<Item = (usize, &str, Vec<&str>)> + '_ {
        self.lines
            .iter()
            .enumerate()
            .filter_map(move |(i, l)| match &l.kind {
                Kind::Setting { key, values, .. } => Some((
                    i,
                    self.slice(*key),
                    values.iter().map(|v| self.slice(*v)).collect(),
                )),
                _ => None,
            })
    }

    /// Every setting line in file order, whatever the setting (for views across includes).
    pub fn assignments(&self) -> Vec<Occurrence> {
        self.settings()
            .map(|(i, key, values)| Occurrence {
                line: i + 1,
                key: key.to_string(),
                values: values.into_iter().map(str::to_string).collect(),
            })
            .collect()
    }

    /// Every line setting `name` in any form: `name`, `extra-name` and the legacy aliases
    /// (`name` may itself be given in any of these forms).
    pub fn occurrences(&self, name: &str) -> Vec<Occurrence> {
        let canonical = canonical_name(name);
        self.settings()
            .filter(|(_, key, _)| form_of(key, canonical).is_some())
            .map(|(i, key, values)| Occurrence {
                line: i + 1,
                key: key.to_string(),
                values: values.into_iter().map(str::to_string).collect(),
            })
            .collect()
    }

    /// The values this file gives `name` with Nix's semantics within one file: a plain line (or
    /// alias) replaces what came before, an `extra-` line appends. `None` if never mentioned.
    pub fn effective(&self, name: &str) -> Option<Vec<String>> {
        let canonical = canonical_name(name);
        let mut current: Option<Vec<String>> = None;
        for (_, key, values) in self.settings() {
            let values = values.into_iter().map(str::to_string);
            match form_of(key, canonical) {
                Some(Form::Plain) => current = Some(values.collect()),
                Some(Form::Extra) => current.get_or_insert_with(Vec::new).extend(values),
                None => {}
            }
        }
        current
    }

    /// Whether `value` is given to `name` on any line, in any form (even if a later plain line
    /// overrides it).
    pub fn contains_value(&self, name: &str, value: &str) -> bool {
        self.occurrences(name)
            .iter()
            .any(|o| o.values.iter().any(|v| v == value))
    }

    /// Adds `value` to `name` as a new last line `extra-NAME = VALUE`, unless the file already
    /// gives `name` that value in effect (any form, not overridden by a later plain line).
    /// A value present but overridden gets the new line, since it would not apply otherwise.
    /// Returns whether the text changed.
    pub fn add_value(&mut self, name: &str, value: &str) -> Result<bool, ConfError> {
        validate_value(value)?;
        let canonical = canonical_name(name);
        validate_name(canonical)?;
        if self
            .effective(canonical)
            .is_some_and(|vs| vs.iter().any(|v| v == value))
        {
            return Ok(false);
        }
        let text = append_line(&self.text, &format!("extra-{canonical} = {value}"));
        self.replace_text(text)?;
        Ok(true)
    }

    /// Removes `value` from `extra-NAME` lines only (never from plain or legacy lines, which the
    /// user wrote); a line left without values is deleted. Returns whether the text changed.
    pub fn remove_value(&mut self, name: &str, value: &str) -> bool {
        let key = format!("extra-{}", canonical_name(name));
        let mut edits = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            let Kind::Setting { key: k, values, .. } = &line.kind else {
                continue;
            };
            if self.slice(*k) != key {
                continue;
            }
            let drop: Vec<bool> = values.iter().map(|v| self.slice(*v) == value).collect();
            if !drop.contains(&true) {
                continue;
            }
            if drop.iter().all(|d| *d) {
                edits.push((i, i, LineEdit::Delete));
                continue;
            }
            // Cut each run of dropped values with the whitespace that joined it to its
            // neighbour, so the remaining spacing and any inline comment stay as they were.
            let mut cuts = Vec::new();
            let mut j = 0;
            while j < values.len() {
                if !drop[j] {
                    j += 1;
                    continue;
                }
                let a = j;
                while j < values.len() && drop[j] {
                    j += 1;
                }
                let b = j - 1;
                if a > 0 {
                    cuts.push((values[a - 1].1, values[b].1));
                } else {
                    cuts.push((values[a].0, values[b + 1].0));
                }
            }
            let mut content = String::new();
            let mut pos = line.span.start;
            for (from, to) in cuts {
                content.push_str(&self.text[pos..from]);
                pos = to;
            }
            content.push_str(&self.text[pos..line.span.end]);
            edits.push((i, i, LineEdit::Replace(content)));
        }
        self.apply(&edits)
    }

    /// The value of the last plain `name = ...` line (exact name), its words joined by one
    /// space as Nix does.
    pub fn get(&self, name: &str) -> Option<String> {
        self.settings()
            .filter(|(_, key, _)| *key == name)
            .last()
            .map(|(_, _, values)| values.join(" "))
    }

    /// Sets a scalar: replaces the value of the last plain `name` line (keeping its spacing and
    /// inline comment), or appends `name = value`. Returns whether the text changed.
    pub fn set(&mut self, name: &str, value: &str) -> Result<bool, ConfError> {
        validate_name(name)?;
        validate_scalar(value)?;
        let last = self
            .lines
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, l)| match &l.kind {
                Kind::Setting { key, eq, values } if self.slice(*key) == name => {
                    Some((i, l.span, *eq, values.clone()))
                }
                _ => None,
            });
        let text = match last {
            Some((i, span, eq, values)) => {
                let (from, to, insert) = match (values.first(), values.last()) {
                    (Some(f), Some(l)) => (f.0, l.1, value.to_string()),
                    _ if value.is_empty() => return Ok(false),
                    _ => (eq.1, eq.1, format!(" {value}")),
                };
                let content = format!(
                    "{}{insert}{}",
                    &self.text[span.start..from],
                    &self.text[to..span.end]
                );
                rebuild(
                    &self.text,
                    &split_lines(&self.text),
                    &[(i, i, LineEdit::Replace(content))],
                )
            }
            None => {
                let line = if value.is_empty() {
                    format!("{name} =")
                } else {
                    format!("{name} = {value}")
                };
                append_line(&self.text, &line)
            }
        };
        if text == self.text {
            return Ok(false);
        }
        self.replace_text(text)?;
        Ok(true)
    }

    /// Removes every plain line of `name` (exact name). Returns whether the text changed.
    pub fn unset(&mut self, name: &str) -> bool {
        let edits: Vec<_> = self
            .settings()
            .filter(|(_, key, _)| *key == name)
            .map(|(i, _, _)| (i, i, LineEdit::Delete))
            .collect();
        self.apply(&edits)
    }

    /// Appends `!include PATH` (a missing file is ignored by Nix) unless a line already
    /// includes `path`. Returns whether the text changed.
    pub fn add_include(&mut self, path: &str) -> Result<bool, ConfError> {
        validate_scalar(path)?;
        if path.is_empty() || path.chars().any(char::is_whitespace) || path.contains('#') {
            return Err(ConfError::new(0, format!("{path:?} cannot be included")));
        }
        if self.includes().iter().any(|i| i.path == path) {
            return Ok(false);
        }
        let text = append_line(&self.text, &format!("!include {path}"));
        self.replace_text(text)?;
        Ok(true)
    }

    /// Removes every `!include PATH` line for `path` (never an `include` line: the user wrote
    /// that). Returns whether the text changed.
    pub fn remove_include(&mut self, path: &str) -> bool {
        let edits: Vec<_> = self
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                matches!(l.kind, Kind::Include { optional: true, path: p } if self.slice(p) == path)
            })
            .map(|(i, _)| (i, i, LineEdit::Delete))
            .collect();
        self.apply(&edits)
    }

    /// The `include` and `!include` lines, in order.
    pub fn includes(&self) -> Vec<Include> {
        self.lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l.kind {
                Kind::Include { optional, path } => Some(Include {
                    path: self.slice(path).to_string(),
                    optional,
                    line: i + 1,
                }),
                _ => None,
            })
            .collect()
    }

    fn apply(&mut self, edits: &[(usize, usize, LineEdit)]) -> bool {
        if edits.is_empty() {
            return false;
        }
        let spans: Vec<LineSpan> = self.lines.iter().map(|l| l.span).collect();
        let text = rebuild(&self.text, &spans, edits);
        let changed = text != self.text;
        // Our edits only drop values or whole lines, so the result always parses; if it ever
        // did not, keeping the old text is the safe failure.
        changed && self.replace_text(text).is_ok()
    }

    fn replace_text(&mut self, text: String) -> Result<(), ConfError> {
        let parsed = NixConf::parse(&text).map_err(|e| {
            ConfError::new(
                0,
                format!("internal error: the edited file would not parse ({e})"),
            )
        })?;
        *self = parsed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_include_line_is_added_once_and_removed_to_the_original_bytes() {
        for original in [
            "",
            "a = 1\n",
            "a = 1",
            "# c\r\nb = 2\r\n",
            "include x.conf\n",
        ] {
            let mut c = NixConf::parse(original).unwrap();
            assert!(c.add_include("nixstore-auth.conf").unwrap());
            assert!(!c.add_include("nixstore-auth.conf").unwrap());
            assert_eq!(c.includes().last().unwrap().path, "nixstore-auth.conf");
            assert!(c.includes().last().unwrap().optional);
            assert!(c.remove_include("nixstore-auth.conf"));
            assert_eq!(c.to_text(), original, "{original:?}");
        }
        // Only `!include` lines go: a plain `include` is the user's.
        let mut c = NixConf::parse("include nixstore-auth.conf\n").unwrap();
        assert!(!c.remove_include("nixstore-auth.conf"));
        assert!(NixConf::parse("").unwrap().add_include("a b").is_err());
    }

    fn conf(text: &str) -> NixConf {
        NixConf::parse(text).unwrap()
    }

    const COMMENTED: &str = "# /etc/nix/nix.conf, written by hand\r\n\
        \r\n\
        ## Caches ##   \r\n\
        substituters = https://cache.nixos.org   # the default\r\n\
        \ttrusted-public-keys = cache.nixos.org-1:abc=  \r\n\
        # extra-substituters = https://commented.example\r\n\
        \r\n\
        sandbox = false #no sandbox here\r\n\
        !include /etc/nix/local.conf\r\n\
        include   nix.d/more.conf   # more\r\n\
        # trailing comment without newline";

    #[test]
    fn parse_keeps_every_byte_and_reads_settings() {
        let c = conf(COMMENTED);
        assert_eq!(c.to_text(), COMMENTED);
        assert_eq!(
            c.effective("substituters"),
            Some(vec!["https://cache.nixos.org".to_string()])
        );
        assert_eq!(c.get("sandbox").as_deref(), Some("false"));
        assert!(!c.contains_value("substituters", "https://commented.example"));
        assert_eq!(
            c.includes(),
            vec![
                Include {
                    path: "/etc/nix/local.conf".into(),
                    optional: true,
                    line: 9
                },
                Include {
                    path: "nix.d/more.conf".into(),
                    optional: false,
                    line: 10
                },
            ]
        );
    }

    #[test]
    fn empty_and_blank_texts_parse() {
        for text in ["", "\n", "   ", "\r\n\r\n", "#", "  # only a comment\n"] {
            let c = conf(text);
            assert_eq!(c.to_text(), text);
            assert_eq!(c.effective("substituters"), None);
            assert!(c.includes().is_empty());
        }
    }

    #[test]
    fn inline_comments_end_values() {
        let c = conf("substituters = a b#c d\nextra-substituters = e # f g\n");
        assert_eq!(
            c.effective("substituters"),
            Some(vec!["a".into(), "b".into(), "e".into()])
        );
        assert!(!c.contains_value("substituters", "c"));
        assert!(!c.contains_value("substituters", "f"));
    }

    #[test]
    fn values_split_on_any_nix_whitespace() {
        let c = conf("substituters =\ta  \t b\r\nnetrc-file = /a  b\n");
        assert_eq!(
            c.effective("substituters"),
            Some(vec!["a".into(), "b".into()])
        );
        // Nix joins the words of a scalar with one space.
        assert_eq!(c.get("netrc-file").as_deref(), Some("/a b"));
    }

    #[test]
    fn empty_value_is_an_empty_list() {
        let c = conf("substituters =\nextra-trusted-public-keys =   # nothing\n");
        assert_eq!(c.effective("substituters"), Some(vec![]));
        assert_eq!(c.effective("trusted-public-keys"), Some(vec![]));
        assert_eq!(c.get("substituters").as_deref(), Some(""));
    }

    #[test]
    fn occurrences_cover_extra_and_legacy_forms() {
        let text = "binary-caches = a\n\
                    extra-binary-caches = b\n\
                    substituters = c\n\
                    extra-substituters = d\n\
                    trusted-substituters = t\n\
                    binary-cache-public-keys = k1\n\
                    extra-trusted-public-keys = k2\n\
                    trusted-binary-caches = t2\n";
        let c = conf(text);
        let keys = |name: &str| {
            c.occurrences(name)
                .into_iter()
                .map(|o| (o.line, o.key))
                .collect::<Vec<_>>()
        };
        let subs = vec![
            (1, "binary-caches".to_string()),
            (2, "extra-binary-caches".to_string()),
            (3, "substituters".to_string()),
            (4, "extra-substituters".to_string()),
        ];
        assert_eq!(keys("substituters"), subs);
        // Any form of the name means the same setting.
        assert_eq!(keys("binary-caches"), subs);
        assert_eq!(keys("extra-substituters"), subs);
        assert_eq!(
            keys("trusted-public-keys"),
            vec![
                (6, "binary-cache-public-keys".to_string()),
                (7, "extra-trusted-public-keys".to_string())
            ]
        );
        assert_eq!(
            keys("trusted-substituters"),
            vec![
                (5, "trusted-substituters".to_string()),
                (8, "trusted-binary-caches".to_string())
            ]
        );
        assert_eq!(c.occurrences("substituters")[1].values, vec!["b"]);
    }

    #[test]
    fn effective_follows_nix_order_within_a_file() {
        let c = conf("extra-substituters = x\nsubstituters = a\nextra-binary-caches = b\n");
        assert_eq!(
            c.effective("substituters"),
            Some(vec!["a".into(), "b".into()])
        );
        let c = conf("extra-substituters = x y\n");
        assert_eq!(
            c.effective("substituters"),
            Some(vec!["x".into(), "y".into()])
        );
        let c = conf("substituters = a\nbinary-caches = b\n");
        assert_eq!(c.effective("substituters"), Some(vec!["b".into()]));
        assert_eq!(c.effective("trusted-public-keys"), None);
    }

    #[test]
    fn garbage_lines_are_errors_with_line_numbers() {
        let cases = [
            (
                "a = b\nnonsense\n",
                2,
                "`nonsense` is not followed by ` = `",
            ),
            ("substituters=https://x\n", 1, "`substituters = VALUE`"),
            ("substituters =https://x\n", 1, "spaces around `=`"),
            ("\n\nfoo bar = baz\n", 3, "`foo` is not followed"),
            ("include\n", 1, "exactly one path"),
            ("include a b\n", 1, "exactly one path"),
            ("!include\n", 1, "`!include` takes exactly one path"),
            ("x = 1\r\ny\r\n", 2, "`y`"),
        ];
        for (text, line, needle) in cases {
            let err = NixConf::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.message.contains(needle), "{text:?}: {err}");
            assert!(err.to_string().starts_with(&format!("line {line}: ")));
        }
    }

    #[test]
    fn errors_do_not_echo_secret_looking_tokens() {
        let err = NixConf::parse("access-tokens github.com=ghp_SECRET123\n").unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let err = NixConf::parse("ghp_SECRET/xyz+abc==\n").unwrap_err();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn add_value_appends_an_extra_line() {
        let mut c = conf("# mine\nsubstituters = a\n");
        assert!(c.add_value("substituters", "https://c.example").unwrap());
        assert_eq!(
            c.to_text(),
            "# mine\nsubstituters = a\nextra-substituters = https://c.example\n"
        );
        assert_eq!(
            c.effective("substituters"),
            Some(vec!["a".into(), "https://c.example".into()])
        );
        // A legacy or extra- name writes the canonical extra- form.
        assert!(c.add_value("binary-cache-public-keys", "k:1").unwrap());
        assert!(c.to_text().ends_with("extra-trusted-public-keys = k:1\n"));
    }

    #[test]
    fn add_value_is_a_no_op_when_the_value_is_in_effect_in_any_form() {
        for text in [
            "substituters = a https://c\n",
            "binary-caches = https://c # legacy\n",
            "extra-binary-caches = https://c\n",
            "extra-substituters = https://c\n",
        ] {
            let mut c = conf(text);
            assert!(!c.add_value("substituters", "https://c").unwrap(), "{text}");
            assert_eq!(c.to_text(), text);
        }
    }

    #[test]
    fn add_value_when_a_later_plain_line_overrides_the_value() {
        let text = "extra-substituters = https://c\nsubstituters = other\n";
        let mut c = conf(text);
        assert!(c.contains_value("substituters", "https://c"));
        assert!(c.add_value("substituters", "https://c").unwrap());
        assert_eq!(
            c.effective("substituters"),
            Some(vec!["other".into(), "https://c".into()])
        );
    }

    #[test]
    fn add_value_keeps_crlf_and_missing_final_newline() {
        let mut c = conf("a = 1\r\nb = 2\r\n");
        c.add_value("substituters", "s").unwrap();
        assert_eq!(c.to_text(), "a = 1\r\nb = 2\r\nextra-substituters = s\r\n");

        let mut c = conf("a = 1\nb = 2");
        c.add_value("substituters", "s").unwrap();
        assert_eq!(c.to_text(), "a = 1\nb = 2\nextra-substituters = s");
        assert!(c.remove_value("substituters", "s"));
        assert_eq!(c.to_text(), "a = 1\nb = 2");

        let mut c = conf("a = 1\r\nb = 2");
        c.add_value("substituters", "s").unwrap();
        assert_eq!(c.to_text(), "a = 1\r\nb = 2\r\nextra-substituters = s");

        let mut c = conf("");
        c.add_value("substituters", "s").unwrap();
        assert_eq!(c.to_text(), "extra-substituters = s\n");
    }

    #[test]
    fn add_value_refuses_injection() {
        let mut c = conf("a = 1\n");
        for (bad, needle) in [
            ("https://x\nsubstituters = evil", "newline"),
            ("https://x\rtrusted-users = me", "carriage return"),
            ("https://x#frag", "'#'"),
            ("https://x\u{1}", "U+0001"),
            ("https://x\u{7f}", "U+007F"),
            ("https://x\ty", "tab"),
            ("https://x y", "space"),
            ("https://x\u{a0}y", "U+00A0"),
            ("", "empty"),
        ] {
            let err = c.add_value("substituters", bad).unwrap_err();
            assert!(err.message.contains(needle), "{bad:?}: {err}");
            assert_eq!(err.line, 0);
        }
        for bad_name in ["", "extra-", "a b", "a=b", "x#y", "include", "a\nb"] {
            assert!(c.add_value(bad_name, "v").is_err(), "{bad_name:?}");
        }
        assert_eq!(c.to_text(), "a = 1\n");
    }

    #[test]
    fn validate_value_accepts_ordinary_items() {
        for ok in [
            "https://cache.example.com/path?x=1",
            "s3://bucket?region=eu-west-1&profile=p",
            "cache.example.com-1:AbC+/=",
            "ünïcode",
        ] {
            validate_value(ok).unwrap();
        }
    }

    #[test]
    fn validate_scalar_allows_inner_spaces_only() {
        validate_scalar("/home/me/my netrc").unwrap();
        validate_scalar("").unwrap();
        for bad in [" x", "x ", "a\tb", "a\nb", "a#b", "a\u{1b}b"] {
            assert!(validate_scalar(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn remove_value_only_touches_extra_lines() {
        let text = "substituters = s x\n\
                    binary-caches = x\n\
                    extra-binary-caches = x\n\
                    extra-substituters = a x b # keep me\n\
                    extra-substituters = x\n\
                    extra-substituters   =   x   y\n";
        let mut c = conf(text);
        assert!(c.remove_value("substituters", "x"));
        assert_eq!(
            c.to_text(),
            "substituters = s x\n\
             binary-caches = x\n\
             extra-binary-caches = x\n\
             extra-substituters = a b # keep me\n\
             extra-substituters   =   y\n"
        );
        assert!(!c.remove_value("substituters", "x"));
        assert!(!c.remove_value("substituters", "not-there"));
    }

    #[test]
    fn remove_value_drops_runs_of_values_cleanly() {
        let mut c = conf("extra-substituters = x x a x x b x\t# c\n");
        assert!(c.remove_value("substituters", "x"));
        assert_eq!(c.to_text(), "extra-substituters = a b\t# c\n");
    }

    #[test]
    fn remove_value_deletes_an_emptied_line_keeping_neighbours() {
        let mut c = conf("# a\r\nextra-substituters = x   # ours\r\n# b\r\n");
        assert!(c.remove_value("substituters", "x"));
        assert_eq!(c.to_text(), "# a\r\n# b\r\n");
    }

    #[test]
    fn get_set_unset_scalars() {
        let text = "netrc-file = /old # keep this comment\nnetrc-file =  /older\t \n";
        let mut c = conf(text);
        assert_eq!(c.get("netrc-file").as_deref(), Some("/older"));
        assert!(c.set("netrc-file", "/new path").unwrap());
        assert_eq!(
            c.to_text(),
            "netrc-file = /old # keep this comment\nnetrc-file =  /new path\t \n"
        );
        assert_eq!(c.get("netrc-file").as_deref(), Some("/new path"));
        assert!(!c.set("netrc-file", "/new path").unwrap());
        assert!(c.unset("netrc-file"));
        assert_eq!(c.to_text(), "");
        assert!(!c.unset("netrc-file"));
        assert_eq!(c.get("netrc-file"), None);
    }

    #[test]
    fn set_keeps_inline_comment_and_fills_empty_values() {
        let mut c = conf("netrc-file =# none yet\n");
        assert!(c.set("netrc-file", "/n").unwrap());
        assert_eq!(c.to_text(), "netrc-file = /n# none yet\n");
        let mut c = conf("a = 1");
        assert!(c.set("netrc-file", "/n").unwrap());
        assert_eq!(c.to_text(), "a = 1\nnetrc-file = /n");
        assert!(c.unset("netrc-file"));
        assert_eq!(c.to_text(), "a = 1");
        assert!(c.set("substituters", "").unwrap());
        assert_eq!(c.to_text(), "a = 1\nsubstituters =");
        assert_eq!(c.effective("substituters"), Some(vec![]));
    }

    #[test]
    fn set_refuses_injection() {
        let mut c = conf("");
        assert!(c.set("netrc-file", "/x\ntrusted-users = *").is_err());
        assert!(c.set("netrc-file", "/x # y").is_err());
        assert!(c.set("bad name", "x").is_err());
        assert_eq!(c.to_text(), "");
    }

    #[test]
    fn unset_leaves_extra_and_alias_lines() {
        let mut c = conf("substituters = a\nextra-substituters = b\nbinary-caches = c\n");
        assert!(c.unset("substituters"));
        assert_eq!(c.to_text(), "extra-substituters = b\nbinary-caches = c\n");
    }

    #[test]
    fn unset_the_unterminated_last_line_restores_no_final_newline() {
        let mut c = conf("a = 1\nb = 2\r\nnetrc-file = /x");
        assert!(c.unset("netrc-file"));
        assert_eq!(c.to_text(), "a = 1\nb = 2");
    }

    // ---- property tests ----

    fn eol() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("\n"), Just("\r\n")]
    }

    /// Lines Nix accepts, including the awkward ones.
    fn line() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("substituters"),
            Just("extra-substituters"),
            Just("binary-caches"),
            Just("extra-binary-caches"),
            Just("trusted-public-keys"),
            Just("extra-trusted-public-keys"),
            Just("netrc-file"),
            Just("sandbox"),
        ];
        let ws = prop_oneof![Just(""), Just(" "), Just("\t"), Just("  \t")];
        let value = "[a-z0-9:/.=-]{1,10}";
        let comment = prop_oneof![Just(String::new()), "#[ -~]{0,12}".prop_map(|s| s)];
        prop_oneof![
            Just(String::new()),
            "[ \t]{0,3}#[^\r\n]{0,20}",
            (
                ws.clone(),
                name,
                ws.clone(),
                proptest::collection::vec(value, 0..4),
                ws.clone(),
                comment.clone()
            )
                .prop_map(|(w1, n, w2, vs, w3, c)| {
                    let sep = if w2.is_empty() { " " } else { w2 };
                    let mut s = format!("{w1}{n}{sep}={sep}{}", vs.join(sep));
                    s.push_str(w3);
                    s.push_str(&c);
                    s
                }),
            (ws, prop::bool::ANY, "[a-z/.]{1,10}", comment).prop_map(|(w, opt, p, c)| format!(
                "{w}{}include {p} {c}",
                if opt { "!" } else { "" }
            )),
        ]
    }

    fn conf_text() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec((line(), eol()), 0..8),
            prop::bool::ANY,
        )
            .prop_map(|(lines, final_nl)| {
                let mut s = String::new();
                let n = lines.len();
                for (i, (l, e)) in lines.into_iter().enumerate() {
                    s.push_str(&l);
                    if i + 1 < n || final_nl {
                        s.push_str(e);
                    }
                }
                s
            })
    }

    fn any_name() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("substituters"),
            Just("trusted-public-keys"),
            Just("binary-caches"),
            Just("netrc-file"),
        ]
    }

    proptest! {
        #[test]
        fn parse_never_panics(text in any::<String>()) {
            if let Ok(c) = NixConf::parse(&text) {
                prop_assert_eq!(c.to_text(), text);
            }
        }

        #[test]
        fn parse_never_panics_on_near_miss_text(text in "[a-z =#!\t\r\n\u{0}-\u{1f}é]{0,60}") {
            if let Ok(c) = NixConf::parse(&text) {
                let _ = c.effective("substituters");
                prop_assert_eq!(c.to_text(), text);
            }
        }

        #[test]
        fn generated_texts_parse_and_round_trip(text in conf_text()) {
            let c = NixConf::parse(&text).unwrap();
            prop_assert_eq!(c.to_text(), text);
        }

        #[test]
        fn add_then_remove_restores_the_bytes(
            text in conf_text(), name in any_name(), value in "[a-z0-9:/.]{1,12}",
        ) {
            let mut c = NixConf::parse(&text).unwrap();
            prop_assume!(!c.contains_value(name, &value));
            prop_assert!(c.add_value(name, &value).unwrap());
            prop_assert!(c.contains_value(name, &value));
            prop_assert!(c.effective(name).unwrap().contains(&value));
            // In memory and after a write and re-read, as the CLI does.
            let mut reparsed = NixConf::parse(&c.to_text()).unwrap();
            prop_assert!(c.remove_value(name, &value));
            prop_assert_eq!(c.to_text(), text.clone());
            prop_assert!(reparsed.remove_value(name, &value));
            prop_assert_eq!(reparsed.to_text(), text);
        }

        #[test]
        fn add_value_is_idempotent(
            text in conf_text(), name in any_name(), value in "[a-z0-9:/.]{1,12}",
        ) {
            let mut once = NixConf::parse(&text).unwrap();
            once.add_value(name, &value).unwrap();
            let mut twice = once.clone();
            prop_assert!(!twice.add_value(name, &value).unwrap());
            prop_assert_eq!(twice.to_text(), once.to_text());
        }

        #[test]
        fn set_then_unset_restores_the_bytes(
            text in conf_text(),
            name in prop_oneof![Just("netrc-file"), Just("sandbox"), Just("new-setting")],
            value in "[a-z0-9/.]{1,8}( [a-z]{1,4})?",
        ) {
            let mut c = NixConf::parse(&text).unwrap();
            prop_assume!(c.get(name).is_none());
            prop_assert!(c.set(name, &value).unwrap());
            prop_assert_eq!(c.get(name), Some(value.clone()));
            let mut reparsed = NixConf::parse(&c.to_text()).unwrap();
            prop_assert!(c.unset(name));
            prop_assert_eq!(c.to_text(), text.clone());
            prop_assert!(reparsed.unset(name));
            prop_assert_eq!(reparsed.to_text(), text);
        }

        #[test]
        fn edits_only_change_the_edited_lines(
            text in conf_text(), value in "[a-z0-9:/.]{1,12}",
        ) {
            let mut c = NixConf::parse(&text).unwrap();
            let before: Vec<String> = c.occurrences("sandbox").into_iter().map(|o| o.key).collect();
            c.add_value("substituters", &value).unwrap();
            c.set("netrc-file", "/etc/nix/netrc").unwrap();
            c.remove_value("trusted-public-keys", "a");
            let after: Vec<String> = c.occurrences("sandbox").into_iter().map(|o| o.key).collect();
            prop_assert_eq!(before, after);
            prop_assert_eq!(NixConf::parse(&c.to_text()).unwrap(), c);
        }
    }
}
