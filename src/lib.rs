//! nixstore-auth: credentials for private Nix binary caches, for the client and the daemon.
//!
//! The binary is a thin shell over these modules: `cmd` holds the clap tree and one file (or
//! folder) per subcommand; the rest are small models and editors that the commands glue to
//! I/O. Models never import from `cmd`, and no two files import each other. ARCHITECTURE.md
//! maps the modules and says where to change what.

pub mod aws;
pub mod azure;
pub mod cache;
pub mod cache_plan;
pub mod cloud;
pub mod cloud_cache;
pub mod cmd;
pub mod config;
pub mod ephemeral;
pub mod error;
pub mod fs;
pub mod gcp;
pub mod launch;
pub mod nix;
pub mod plan;
pub mod proxy;
pub mod push;
pub mod redact;
pub mod refresh;
pub mod s3_params;
pub mod secret;
pub mod service;
pub mod time;
pub mod token_command;
pub mod ui;
pub mod user;

/// Runs the program and returns the process exit code.
pub fn main() -> i32 {
    cmd::main()
}
