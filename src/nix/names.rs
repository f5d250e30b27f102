//! Setting names as Nix reads them: the one table of legacy aliases, and the `extra-` forms.

/// Legacy names Nix still accepts, as (canonical, alias).
const ALIASES: &[(&str, &str)] = &[
    ("substituters", "binary-caches"),
    ("trusted-public-keys", "binary-cache-public-keys"),
    ("trusted-substituters", "trusted-binary-caches"),
];

/// Maps a legacy alias to its canonical name; other names are returned unchanged.
pub fn unalias(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(_, alias)| *alias == name)
        .map(|(canonical, _)| *canonical)
        .unwrap_or(name)
}

/// The canonical setting a caller means: `extra-binary-caches`, `binary-caches` and
/// `substituters` all mean `substituters`.
pub fn canonical_name(name: &str) -> &str {
    unalias(name.strip_prefix("extra-").unwrap_or(name))
}

/// How a key relates to a canonical setting name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `name` or a legacy alias: replaces the value.
    Plain,
    /// `extra-name` or `extra-alias`: appends.
    Extra,
}

pub fn form_of(key: &str, canonical: &str) -> Option<Form> {
    let (form, base) = match key.strip_prefix("extra-") {
        Some(base) => (Form::Extra, base),
        None => (Form::Plain, key),
    };
    (unalias(base) == canonical).then_some(form)
}

/// A key as written, split: its canonical setting, and whether the form appends (`extra-`).
pub fn split_key(key: &str) -> (&str, bool) {
    match key.strip_prefix("extra-") {
        Some(base) => (unalias(base), true),
        None => (unalias(key), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_and_extra_forms_map_to_one_name() {
        assert_eq!(split_key("binary-caches"), ("substituters", false));
        assert_eq!(
            split_key("extra-binary-cache-public-keys"),
            ("trusted-public-keys", true)
        );
        assert_eq!(
            split_key("extra-trusted-binary-caches"),
            ("trusted-substituters", true)
        );
        assert_eq!(split_key("sandbox"), ("sandbox", false));
        assert_eq!(canonical_name("extra-binary-caches"), "substituters");
        assert_eq!(form_of("binary-caches", "substituters"), Some(Form::Plain));
        assert_eq!(
            form_of("extra-substituters", "substituters"),
            Some(Form::Extra)
        );
        assert_eq!(form_of("netrc-file", "substituters"), None);
    }
}
