//! Everything about the installed Nix: its config files, netrc, the daemon, forwarded settings.

pub mod builders;
pub mod client_cache;
pub mod conf;
pub mod credential_plan;
pub mod forward;
pub mod https_route;
pub mod include;
pub mod lines;
pub mod names;
pub mod netrc;
pub mod probe_cache;
pub mod setup;
pub mod snippet;
pub mod target;
pub mod version;

/// The netrc file at `path`: `None` when it is missing or does not parse (callers that edit it
/// go through a `Plan`, which reports parse errors with the line).
pub fn read_netrc(path: &std::path::Path) -> anyhow::Result<Option<netrc::Netrc>> {
    Ok(crate::fs::read_optional(path)?.and_then(|t| netrc::Netrc::parse(&t).ok()))
}
