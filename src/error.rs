//! Exit codes and the one error type that carries a specific code.

/// Everything went fine.
pub const EXIT_OK: i32 = 0;
/// A runtime error: bad input, a failed write, an unreachable endpoint.
pub const EXIT_ERROR: i32 = 1;
/// The command line itself was wrong (clap uses 2 as well).
pub const EXIT_USAGE: i32 = 2;
/// The change needs an administrator (untrusted user, NixOS-managed file).
pub const EXIT_NEEDS_ADMIN: i32 = 3;
/// Stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
pub const EXIT_INTERRUPTED: i32 = 130;

/// An error that maps to a specific exit code. Anything else exits with [`EXIT_ERROR`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Coded {
    pub code: i32,
    pub message: String,
}

impl Coded {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Coded {
            code,
            message: message.into(),
        }
    }
}

/// Shorthand for a usage error (exit 2) that is found after clap has parsed argv.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    Coded::new(EXIT_USAGE, message).into()
}

/// The exit code an error should produce.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    err.downcast_ref::<Coded>()
        .map(|c| c.code)
        .unwrap_or(EXIT_ERROR)
}
