//! Everything about the installed Nix: its config files, netrc, the daemon, forwarded settings.

pub mod conf;
pub mod forward;
pub mod netrc;
pub mod setup;
pub mod snippet;
pub mod target;
