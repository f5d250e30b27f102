//! The line model the nix.conf and netrc editors share: byte offsets into the original text,
//! so that unedited lines (comments, blank lines, trailing whitespace, CRLF, a missing final
//! newline) come back byte for byte.

/// One line of a text: `start..end` is its content, `end..next` its line ending
/// (`"\n"`, `"\r\n"`, or empty for a last line without a final newline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineSpan {
    pub start: usize,
    pub end: usize,
    pub next: usize,
}

impl LineSpan {
    pub fn has_eol(&self) -> bool {
        self.next > self.end
    }
}

/// Splits `text` into lines. A `\r` directly before `\n` belongs to the line ending, so CRLF
/// files edit cleanly; a lone `\r` stays in the content.
pub fn split_lines(text: &str) -> Vec<LineSpan> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let nl = start + i;
                let end = if nl > start && bytes[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                out.push(LineSpan {
                    start,
                    end,
                    next: nl + 1,
                });
                start = nl + 1;
            }
            None => {
                out.push(LineSpan {
                    start,
                    end: bytes.len(),
                    next: bytes.len(),
                });
                break;
            }
        }
    }
    out
}

/// The line ending a new line should get: the file's first one, `\n` for a file without any.
pub fn eol_style<'a>(text: &'a str, lines: &[LineSpan]) -> &'a str {
    lines
        .iter()
        .find(|l| l.has_eol())
        .map(|l| &text[l.end..l.next])
        .unwrap_or("\n")
}

/// What to do with a range of lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEdit {
    /// Remove the lines with their line endings. Removing the last line of a file that lacks a
    /// final newline also removes the line ending before it, so the file again ends without one
    /// (the inverse of [`append_line`]).
    Delete,
    /// Replace the lines' content by this text, keeping the line ending of the last one.
    Replace(String),
}

/// Applies edits given as `(first line, last line, edit)`, sorted and not overlapping.
pub fn rebuild(text: &str, lines: &[LineSpan], edits: &[(usize, usize, LineEdit)]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut pos = 0; // byte offset in `text` copied so far
    for (first, last, edit) in edits {
        let (Some(f), Some(l)) = (lines.get(*first), lines.get(*last)) else {
            continue;
        };
        if f.start < pos || l.next < f.start {
            continue; // overlapping or reversed: ignore rather than corrupt the text
        }
        out.push_str(&text[pos..f.start]);
        match edit {
            LineEdit::Replace(content) => {
                out.push_str(content);
                out.push_str(&text[l.end..l.next]);
            }
            LineEdit::Delete => {
                if !l.has_eol() {
                    if out.ends_with("\r\n") {
                        out.truncate(out.len() - 2);
                    } else if out.ends_with('\n') {
                        out.truncate(out.len() - 1);
                    }
                }
            }
        }
        pos = l.next;
    }
    out.push_str(&text[pos..]);
    out
}

/// Appends `line` as a line of its own. A file that ends in a newline gets `line` plus a
/// newline; a file without a final newline gets a newline and then `line` without one, so that
/// [`LineEdit::Delete`] of that line restores the original bytes (also after a re-parse).
pub fn append_line(text: &str, line: &str) -> String {
    let lines = split_lines(text);
    let style = eol_style(text, &lines);
    let mut out = String::with_capacity(text.len() + line.len() + 2);
    out.push_str(text);
    match lines.last() {
        None => {
            out.push_str(line);
            out.push_str(style);
        }
        Some(last) if last.has_eol() => {
            out.push_str(line);
            out.push_str(&text[last.end..last.next]);
        }
        Some(_) => {
            // A lone trailing `\r` must become part of a CRLF ending; otherwise removing the new
            // line after a re-parse would take the `\r` with it.
            let eol = if style == "\r\n" || text.ends_with('\r') {
                "\r\n"
            } else {
                "\n"
            };
            out.push_str(eol);
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_helpers_round_trip() {
        for text in [
            "",
            "a",
            "a\n",
            "a\r\n",
            "a\r",
            "\n\n",
            "a\nb\r\nc",
            "x\r\r\n",
        ] {
            let lines = split_lines(text);
            assert_eq!(rebuild(text, &lines, &[]), text);
            let appended = append_line(text, "NEW");
            let re = split_lines(&appended);
            let last = re.len() - 1;
            assert_eq!(&appended[re[last].start..re[last].end], "NEW", "{text:?}");
            assert_eq!(
                rebuild(&appended, &re, &[(last, last, LineEdit::Delete)]),
                text,
                "{text:?}"
            );
        }
    }
}
