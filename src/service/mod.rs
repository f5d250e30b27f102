//! The background service: the proxy kept running for the user (socket-activated by systemd or
//! launchd, else a detached persistent process), and the include file through which plain Nix
//! commands reach it. `cmd/service.rs` gathers, asks `plan.rs`, performs; `status.rs` is what
//! `service status` and `doctor` both report.

pub mod include;
pub mod manager;
pub mod marker;
pub mod plan;
pub mod status;
pub mod units;
