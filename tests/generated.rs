//! The committed completions and man pages must match the clap tree. Regenerate them with
//! `NIXSTORE_AUTH_REGENERATE=1 cargo test --test generated`.

use std::path::Path;

fn check(dir: &str, files: Vec<(String, String)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let regenerate = std::env::var_os("NIXSTORE_AUTH_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (name, contents) in &files {
        let path = root.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if &current != contents {
            if regenerate {
                std::fs::create_dir_all(&root).unwrap();
                std::fs::write(&path, contents).unwrap();
            } else {
                stale.push(name.clone());
            }
        }
    }
    // A committed file the tree no longer generates is stale too.
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for entry in std::fs::read_dir(&root).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !names.contains(&name.as_str()) {
            if regenerate {
                std::fs::remove_file(root.join(&name)).unwrap();
            } else {
                stale.push(name);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{dir}/ is stale ({stale:?}); run `NIXSTORE_AUTH_REGENERATE=1 cargo test --test generated` and commit"
    );
}

#[test]
fn completions_are_fresh() {
    check("completions", nixstore_auth::cmd::completion_files());
}

#[test]
fn man_pages_are_fresh() {
    let pages = nixstore_auth::cmd::man_pages();
    assert!(pages.iter().any(|(n, _)| n == "nixstore-auth-use.1"));
    let root = pages.iter().find(|(n, _)| n == "nixstore-auth.1").unwrap();
    assert!(
        root.1.contains(".SH EXAMPLES"),
        "the main page has examples"
    );
    check("man", pages);
}
