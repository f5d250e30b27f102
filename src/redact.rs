//! How a rejected value that may be a secret is shown in a message: by its kind and length,
//! never by any of its characters. A person who pasted the wrong thing (the secret signing key
//! as `--public-key`, the secret access key on the key id's line, a URL with a password) learns
//! what was wrong without the secret reaching a terminal, a CI log or a bug report. Names that
//! are not secret (cache names, regions, profiles, hosts) are shown as they are.

/// `the public key given (88 characters, not shown)`: a value of kind `what`, by its length.
pub fn secret(what: &str, value: &str) -> String {
    format!(
        "the {what} given ({}, not shown)",
        characters(value.chars().count())
    )
}

fn characters(n: usize) -> String {
    format!("{n} character{}", if n == 1 { "" } else { "s" })
}

/// A URL with its login and password (everything between `://` and the last `@` before the
/// path, query or fragment could begin) replaced by its length: `https://<login and password:
/// 11 characters>@cache.example.org:99999`. Works on text that does not parse as a URL, which is
/// when it is shown at all. Without a `@`, the URL is returned as it is.
pub fn url(input: &str) -> String {
    let Some(start) = input.find("://").map(|i| i + 3) else {
        return userinfo_free(input, 0);
    };
    userinfo_free(input, start)
}

fn userinfo_free(input: &str, start: usize) -> String {
    let rest = &input[start..];
    // A password may hold '/', '?' or '#' that a parser would take for the end of the host:
    // the last '@' of the whole text ends what may be userinfo. Over-hiding a path's '@' costs
    // a less helpful message; under-hiding would leak.
    let Some(at) = rest.rfind('@') else {
        return input.to_string();
    };
    format!(
        "{}<login and password: {}>{}",
        &input[..start],
        characters(rest[..at].chars().count()),
        &rest[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_shown_by_kind_and_length_only() {
        let s = secret("public key", "k-1:SECRETSECRET");
        assert_eq!(s, "the public key given (16 characters, not shown)");
        assert_eq!(
            secret("token", "x"),
            "the token given (1 character, not shown)"
        );
    }

    #[test]
    fn url_userinfo_is_replaced_by_its_length() {
        let table = [
            (
                "https://ci:PASSWORD@cache.example.org:99999",
                "https://<login and password: 11 characters>@cache.example.org:99999",
            ),
            ("http://u@h", "http://<login and password: 1 character>@h"),
            // A password with the characters a parser stops at.
            (
                "https://ci:pa/ss?#x@host",
                "https://<login and password: 11 characters>@host",
            ),
            ("u:PASSWORD@h:1", "<login and password: 10 characters>@h:1"),
            ("https://cache.example.org/x", "https://cache.example.org/x"),
            ("s3://b?region=eu-west-1", "s3://b?region=eu-west-1"),
        ];
        for (input, want) in table {
            assert_eq!(url(input), want, "{input}");
            assert!(!url(input).contains("PASS"), "{input}");
        }
    }
}
