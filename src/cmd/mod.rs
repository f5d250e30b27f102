//! The whole command-line tree in one place; each subcommand's behaviour lives in its own file.

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use std::path::PathBuf;

use crate::error;
use crate::ui::Ui;

mod aws_key;
mod completions;
pub use completions::{completion_files, completion_script, man_pages};
mod doctor;
mod env;
mod exec;
mod list;
mod login;
mod logout;
mod proxy;
mod push;
mod remove;
mod secret;
mod service;
mod shell_init;
mod use_;
mod watch_store;

const EXAMPLES: &str = "\
Examples:
  # A private HTTPS cache (attic, nginx with Basic auth); the token is read from stdin
  echo \"$TOKEN\" | nixstore-auth use https://cache.example.org \\
      --public-key cache.example.org-1:BASE64KEY= --token-stdin

  # A private S3 cache: record it once; plain nix (direnv, editors, scripts) uses it through
  # the background service, or run Nix through exec
  nixstore-auth use 's3://my-bucket?region=eu-west-1&profile=work' --public-key my-bucket-1:BASE64KEY=
  nixstore-auth service install
  nixstore-auth exec -- nix build .#package

  # Wrap nix, nix-build, ... in every new shell
  eval \"$(nixstore-auth shell-init bash)\"

  # What is configured, and is it working?
  nixstore-auth list
  nixstore-auth doctor";

/// Make private Nix binary caches (HTTPS and S3) just work, also through the nix-daemon.
#[derive(Debug, Parser)]
#[command(name = "nixstore-auth", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// Say more about what happens (repeat for more detail); secrets are never shown
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only errors and warnings
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// When to colour output (NO_COLOR set: never, unless `always`)
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t)]
    pub color: crate::ui::ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Configure Nix to use a cache: substituter, public key, credential
    Use(UseArgs),
    /// Undo what `use` added for a cache, and nothing else
    #[command(visible_alias = "rm")]
    Remove(RemoveArgs),
    /// Show the caches nixstore-auth knows and where each is configured
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Run a command with cache credentials reaching both the Nix client and the daemon
    Exec(ExecArgs),
    /// Print the current AWS session as shell variables or credential_process JSON
    Env(EnvArgs),
    /// Get or refresh the AWS session now (MFA prompt included) and cache it
    Login(LoginArgs),
    /// Forget cached AWS sessions
    Logout(LogoutArgs),
    /// Upload store paths (with their closure) to a cache, signed
    Push(PushArgs),
    /// Upload every path that appears in the Nix store to a cache, until stopped
    WatchStore(WatchStoreArgs),
    /// Set, inspect or delete the secret stored for a cache
    Secret(SecretArgs),
    /// Keep a profile's long-term AWS access key in the OS keyring
    Aws(AwsArgs),
    /// Diagnose the Nix setup, the caches and the AWS session, with a fix for each problem
    Doctor(DoctorArgs),
    /// Print shell code that wraps nix, nix-build, ... in `nixstore-auth exec`
    ShellInit(ShellInitArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Manage the loopback signing proxy for S3 caches
    Proxy(ProxyArgs),
    /// Keep the proxy running in the background so that plain nix commands reach S3 caches
    Service(ServiceArgs),
}

pub use crate::config::SecretStore;
pub use crate::nix::snippet::Format;
pub use crate::nix::target::Mode;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  echo \"$TOKEN\" | nixstore-auth use https://cache.example.org --public-key cache.example.org-1:KEY= --token-stdin
  nixstore-auth use https://cache.example.org --mode print --format nixos
  echo \"$TOKEN\" | nixstore-auth use https://artifacts.example.org/nix --auth bearer --token-stdin
  nixstore-auth use https://cache.example.org --token-command 'gh auth token'
  nixstore-auth use 's3://bucket?region=eu-west-1&profile=work' --public-key bucket-1:KEY=")]
pub struct UseArgs {
    /// An https:// (or http://) URL, an s3:// URL, or the name of a cache already recorded
    #[arg(add = ArgValueCompleter::new(complete_cache_names))]
    pub cache: String,
    /// Name to record the cache under (default: the host, or the bucket)
    #[arg(long)]
    pub name: Option<String>,
    /// A public key `name:base64` that signs the cache (repeatable)
    #[arg(long = "public-key", value_name = "KEY")]
    pub public_keys: Vec<String>,
    /// Read the token from standard input
    #[arg(long, conflicts_with = "token_env")]
    pub token_stdin: bool,
    /// Read the token from this environment variable
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// The cache needs no token (a public cache signed with your own key)
    #[arg(long, conflicts_with_all = ["token_stdin", "token_env"])]
    pub no_token: bool,
    /// The netrc login to write with the token
    ///
    /// Default: the login the cache was recorded with, else nixstore-auth.
    #[arg(long)]
    pub login: Option<String>,
    #[command(flatten)]
    pub edit: EditArgs,
    /// The shape of printed configuration
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Where to keep the token [default: netrc; keyring on the proxy route]
    #[arg(long, value_enum)]
    pub secret_store: Option<SecretStore>,
    /// How the daemon reaches an HTTPS cache: a netrc file Nix reads, or the loopback proxy
    /// that adds the credential [default: auto, or what the cache was recorded with]
    ///
    /// auto: netrc for a static Basic token kept in a netrc file; the proxy for a Bearer token,
    /// a token command, or a keyring token while the background service is installed.
    #[arg(long, value_enum, value_name = "ROUTE")]
    pub route: Option<crate::nix::https_route::RouteChoice>,
    /// How the token is sent to an HTTPS cache [default: basic, or what was recorded]
    #[arg(long, value_enum, value_name = "SCHEME")]
    pub auth: Option<crate::nix::https_route::Auth>,
    /// A command that prints the token (split like a shell would, but no shell runs it); run
    /// again after the cache's token-ttl (300 s) or when the cache refuses the token
    #[arg(long, value_name = "'CMD ARGS'", conflicts_with_all = ["token_stdin", "token_env", "no_token"])]
    pub token_command: Option<String>,
    /// A CA bundle (PEM) that verifies the HTTPS cache, besides the system's and Nix's
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// Restart the nix-daemon after writing the system nix.conf (systemd or launchd)
    #[arg(long)]
    pub restart_daemon: bool,
    /// Record this secret key file to sign uploads to the cache (push, watch-store, exec --push)
    #[arg(long, value_name = "FILE")]
    pub secret_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nixstore-auth remove cache-example-org\n  nixstore-auth remove https://cache.example.org --dry-run"
)]
pub struct RemoveArgs {
    /// The cache's name or URL
    #[arg(add = ArgValueCompleter::new(complete_cache_names))]
    pub cache: String,
    #[command(flatten)]
    pub edit: EditArgs,
}

/// What `use` and `remove` both take: where to edit, and how carefully.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// Which files to edit (auto: decided from the installed Nix)
    #[arg(long, value_enum, default_value_t)]
    pub mode: Mode,
    /// Edit this nix.conf instead of the one the mode picks
    #[arg(long, value_name = "PATH")]
    pub nix_conf: Option<PathBuf>,
    /// Edit this netrc file instead of the one in force
    #[arg(long, value_name = "PATH")]
    pub netrc: Option<PathBuf>,
    /// Show a diff of every file that would change, and change none
    #[arg(long)]
    pub dry_run: bool,
    /// Answer yes to questions (hiding /etc/nix/netrc, moving a token)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nixstore-auth list\n  nixstore-auth list --format json | jq '.[] | select(.credential_present | not)'"
)]
pub struct ListArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t, conflicts_with = "json")]
    pub format: OutputFormat,
    /// Print JSON for scripts (the same as --format json)
    #[arg(long)]
    pub json: bool,
}

/// How `list` and `service status` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Lines for people
    #[default]
    Text,
    /// JSON for scripts
    Json,
}

/// How S3 caches reach the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Via {
    /// Environment forwarding when the installed Nix supports it, else the proxy
    #[default]
    Auto,
    /// The loopback signing proxy
    Proxy,
    /// A Nix setting that forwards environment variables to the daemon (no Nix has one yet)
    Env,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nixstore-auth exec -- nix build .#package
  nixstore-auth exec --profile work --mfa-code 123456 -- nix-store -r /nix/store/HASH-NAME
  nixstore-auth exec --cache my-bucket -- sh -c 'nixos-rebuild switch'
  # Upload everything the build adds to the store, signed with the recorded key:
  nixstore-auth exec --push my-bucket -- nix build .#package
  # Or upload a result afterwards:
  nixstore-auth push my-bucket ./result")]
pub struct ExecArgs {
    /// A recorded cache to make available (repeatable; default: every recorded S3 or keyring cache)
    #[arg(add = ArgValueCompleter::new(complete_cache_names), long = "cache", value_name = "NAME")]
    pub caches: Vec<String>,
    /// The AWS profile to use
    #[arg(long, env = "NIXSTORE_AUTH_AWS_PROFILE")]
    pub profile: Option<String>,
    /// A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)
    #[arg(long, env = "NIXSTORE_AUTH_MFA_CODE", hide_env_values = true)]
    pub mfa_code: Option<String>,
    /// How S3 caches reach the daemon
    #[arg(long, value_enum, default_value_t)]
    pub via: Via,
    /// Also hand the AWS session to fixed-output derivation builders (impure-env, Nix >= 2.19)
    #[arg(long)]
    pub builder_env: bool,
    /// Upload every path that appears in the store while CMD runs to this cache, then finish
    /// the queue before returning (repeatable; the cache is used for substitution too)
    #[arg(add = ArgValueCompleter::new(complete_cache_names), long = "push", value_name = "CACHE")]
    pub push: Vec<String>,
    /// Exit non-zero when an upload failed (CMD's status when it failed, else 1)
    #[arg(long, requires = "push")]
    pub push_strict: bool,
    /// Upload unsigned (substituters that check signatures refuse such paths)
    #[arg(long, requires = "push")]
    pub no_sign: bool,
    /// The command and its arguments
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<std::ffi::OsString>,
}

/// How `env` prints the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum EnvFormat {
    /// `export NAME=value` lines for sh, bash, zsh
    #[default]
    Sh,
    /// `set -gx NAME value` lines for fish
    Fish,
    /// The AWS credential_process format
    Json,
}

/// Which AWS session: from a recorded S3 cache or a profile.
#[derive(Debug, Args, Clone, Default)]
pub struct SessionArgs {
    /// A recorded S3 cache (or s3:// URL) whose profile and region to use
    #[arg(add = ArgValueCompleter::new(complete_cache_names), conflicts_with = "profile")]
    pub cache: Option<String>,
    /// The AWS profile to use
    #[arg(long)]
    pub profile: Option<String>,
    /// A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)
    #[arg(long, env = "NIXSTORE_AUTH_MFA_CODE", hide_env_values = true)]
    pub mfa_code: Option<String>,
}

fn parse_jobs(v: &str) -> Result<usize, String> {
    crate::push::upload::parse_jobs(v).map_err(|e| e.to_string())
}

impl SessionArgs {
    /// The session these flags ask for (`env`, `login`).
    pub fn request(&self) -> crate::aws::session::SessionRequest {
        crate::aws::session::SessionRequest::new(self.profile.clone(), self.cache.clone())
            .mfa_code(self.mfa_code.clone())
    }
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  eval \"$(nixstore-auth env --profile work)\"
  # in ~/.aws/config, for any AWS tool:
  #   credential_process = nixstore-auth env --format json --profile work")]
pub struct EnvArgs {
    #[command(flatten)]
    pub session: SessionArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: EnvFormat,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nixstore-auth login --profile work\n  nixstore-auth login my-bucket --mfa-code 123456 --duration 43200"
)]
pub struct LoginArgs {
    #[command(flatten)]
    pub session: SessionArgs,
    /// Session length in seconds (default: the profile's duration_seconds, else 3600)
    #[arg(long, value_name = "SECS")]
    pub duration: Option<u32>,
    /// Length of a new MFA base session in seconds, for role profiles with mfa_serial
    /// (default: mfa-session-duration in config.toml, else 43200)
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(900..=129600))]
    pub mfa_session_duration: Option<u32>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nixstore-auth logout --profile work\n  nixstore-auth logout --all"
)]
pub struct LogoutArgs {
    /// Forget the session of this profile
    #[arg(long, conflicts_with = "all")]
    pub profile: Option<String>,
    /// Forget every cached session
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nixstore-auth push my-bucket ./result --secret-key ~/.config/nix/cache-secret-key\n  nixstore-auth push cache-example-org ./result      # with the key `use --secret-key` recorded\n  nixstore-auth push my-bucket ./result --no-sign"
)]
pub struct PushArgs {
    /// The recorded cache (name or URL) to upload to
    #[arg(add = ArgValueCompleter::new(complete_cache_names))]
    pub cache: String,
    /// Store paths to upload, with their closure
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub upload: UploadFlags,
}

/// What `push` and `watch-store` both take: how to sign, and which AWS session to use.
#[derive(Debug, Args)]
pub struct UploadFlags {
    /// Sign with this secret key file (default: the key recorded for the cache)
    #[arg(long, value_name = "FILE")]
    pub secret_key: Option<PathBuf>,
    /// Upload unsigned (substituters that check signatures refuse such paths)
    #[arg(long, conflicts_with = "secret_key")]
    pub no_sign: bool,
    /// The AWS profile to use
    #[arg(long)]
    pub profile: Option<String>,
    /// A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)
    #[arg(long, env = "NIXSTORE_AUTH_MFA_CODE", hide_env_values = true)]
    pub mfa_code: Option<String>,
    /// Upload this many paths at a time (1 to 64; `exec --push` reads NIXSTORE_AUTH_PUSH_JOBS)
    #[arg(short, long, value_name = "N", env = "NIXSTORE_AUTH_PUSH_JOBS", default_value_t = crate::push::upload::DEFAULT_JOBS, value_parser = parse_jobs)]
    pub jobs: usize,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nixstore-auth watch-store my-bucket
  nixstore-auth watch-store cache-example-org --secret-key ~/.config/nix/cache-secret-key")]
pub struct WatchStoreArgs {
    /// The recorded cache (name or URL) to upload to
    #[arg(add = ArgValueCompleter::new(complete_cache_names))]
    pub cache: String,
    #[command(flatten)]
    pub upload: UploadFlags,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  echo \"$NEW_TOKEN\" | nixstore-auth secret set cache-example-org --token-stdin\n  nixstore-auth secret status\n  nixstore-auth secret delete cache-example-org"
)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub action: SecretAction,
}

#[derive(Debug, Subcommand)]
pub enum SecretAction {
    /// Store a new token (or signing key) for a cache, from stdin or a hidden prompt
    Set {
        /// The cache's name or URL
        #[arg(add = ArgValueCompleter::new(complete_cache_names))]
        cache: String,
        /// Read the token from standard input
        #[arg(long)]
        token_stdin: bool,
        /// Read the cache's signing key for uploads from standard input (kept in the keyring)
        #[arg(long, conflicts_with = "token_stdin")]
        signing_key_stdin: bool,
        /// Read an Azure cache's storage account key from standard input (kept in the keyring)
        #[arg(long, conflicts_with_all = ["token_stdin", "signing_key_stdin", "sas_stdin"])]
        azure_key_stdin: bool,
        /// Read an Azure cache's SAS token from standard input (kept in the keyring)
        #[arg(long, conflicts_with_all = ["token_stdin", "signing_key_stdin"])]
        sas_stdin: bool,
    },
    /// Say where each secret lives and, for AWS sessions, when it expires
    Status {
        /// Only this cache
        #[arg(add = ArgValueCompleter::new(complete_cache_names))]
        cache: Option<String>,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Delete the stored token (or signing key) of a cache
    Delete {
        /// The cache's name or URL
        #[arg(add = ArgValueCompleter::new(complete_cache_names))]
        cache: String,
        /// Delete the signing key instead of the token
        #[arg(long)]
        signing_key: bool,
    },
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nixstore-auth aws add-key --profile base\n  printf '%s\\n%s\\n' \"$ID\" \"$SECRET\" | nixstore-auth aws add-key --profile base\n  nixstore-auth aws remove-key --profile base"
)]
pub struct AwsArgs {
    #[command(subcommand)]
    pub action: AwsAction,
}

#[derive(Debug, Subcommand)]
pub enum AwsAction {
    /// Store a profile's access key id and secret in the keyring (prompt, or two lines on stdin)
    AddKey {
        /// The profile the key belongs to
        #[arg(long)]
        profile: String,
    },
    /// Delete a profile's stored access key
    RemoveKey {
        /// The profile the key belongs to
        #[arg(long)]
        profile: String,
    },
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nixstore-auth doctor\n  nixstore-auth doctor cache-example-org --json"
)]
pub struct DoctorArgs {
    /// Check only this cache
    #[arg(add = ArgValueCompleter::new(complete_cache_names))]
    pub cache: Option<String>,
    /// Print JSON for scripts
    #[arg(long)]
    pub json: bool,
}

/// Shells that `shell-init` writes code for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  eval \"$(nixstore-auth shell-init bash)\"      # in ~/.bashrc\n  eval \"$(nixstore-auth shell-init zsh)\"       # in ~/.zshrc\n  nixstore-auth shell-init fish | source        # in ~/.config/fish/config.fish\n  eval \"$(nixstore-auth shell-init bash --commands nix,nix-build)\""
)]
pub struct ShellInitArgs {
    /// The shell to write code for
    #[arg(value_enum)]
    pub shell: InitShell,
    /// The commands to wrap, comma separated
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "nix,nix-build,nix-shell,nix-store,nix-env,nix-copy-closure,nixos-rebuild"
    )]
    pub commands: Vec<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nixstore-auth completions bash > ~/.local/share/bash-completion/completions/nixstore-auth\n  nixstore-auth completions zsh > ~/.zfunc/_nixstore-auth\n  nixstore-auth completions fish > ~/.config/fish/completions/nixstore-auth.fish"
)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  nixstore-auth proxy status\n  nixstore-auth proxy start --persistent\n  nixstore-auth proxy rotate-secret\n  nixstore-auth proxy stop"
)]
pub struct ProxyArgs {
    #[command(subcommand)]
    pub action: ProxyAction,
}

#[derive(Debug, Subcommand)]
pub enum ProxyAction {
    /// Show whether the proxy runs, its URL base and its caches
    Status,
    /// Make a new URL secret (the old URLs stop working)
    RotateSecret,
    /// Stop a running proxy (a socket-activated one starts again on the next connection)
    Stop,
    /// Start the proxy detached (it exits when idle, unless --persistent)
    Start {
        /// Keep it running: mount every recorded cache it serves, renew credentials without a
        /// person, never exit when idle (the background service without a service manager)
        #[arg(long)]
        persistent: bool,
    },
    /// Run the proxy in the foreground: what `exec`, `proxy start` and the service manager run
    ///
    /// It takes a listening socket handed over by systemd (LISTEN_FDS/LISTEN_PID, fd 3) or
    /// launchd, reports READY=1 and STATUS= lines to NOTIFY_SOCKET, and logs to
    /// ~/.cache/nixstore-auth/proxy.log. Socket-activated or --persistent, it is a background
    /// proxy: it mounts every recorded cache it serves (S3, GCS, Azure, HTTPS on the proxy
    /// route), renews their credentials without a person and never exits when idle; otherwise it exits when no command has used it for
    /// `[proxy] idle-secs`.
    Serve {
        /// A background proxy even without a service manager's socket
        #[arg(long)]
        persistent: bool,
    },
    /// Hold a lease on the proxy with credentials read from stdin (for tests and debugging)
    #[command(hide = true)]
    Lease,
    /// Remove FILE once stdin ends, if proxy PID wrote it (the background proxy's watcher)
    #[command(hide = true)]
    WatchUrls { file: PathBuf, pid: u32 },
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  nixstore-auth service install --dry-run
  nixstore-auth service install
  nixstore-auth service status --format json
  nixstore-auth service uninstall

With systemd (`systemctl --user` answers), the units are written to
$XDG_CONFIG_HOME/systemd/user and the socket is enabled: systemd starts the proxy on the first
connection. On hosts where you are not logged in, run `loginctl enable-linger $USER` once so that
your user manager (and the socket) runs without a login. Without a user service manager
(containers, WSL without systemd, CI), the units are written anyway and a detached
`nixstore-auth proxy start --persistent` is started; add that command to your shell profile (or
a cron `@reboot` line) to start it at login.")]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub action: ServiceAction,
}

#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Run the proxy in the background and point your nix.conf at it (`!include`)
    Install {
        /// Show every file it would write and the nix.conf diff, and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop the background proxy and undo what `install` wrote, byte for byte
    Uninstall {
        /// Show what it would remove, and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Whether the proxy is up and serves every cache it should (exit 0; 1 otherwise; 3
    /// when an administrator must act)
    Status {
        /// Output format
        #[arg(long, value_enum, default_value_t)]
        format: OutputFormat,
    },
}

/// Dynamic completion (`COMPLETE=bash nixstore-auth`): the names of the recorded caches.
fn complete_cache_names(current: &std::ffi::OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let Ok(dirs) = crate::config::Dirs::new() else {
        return Vec::new();
    };
    let caches = crate::config::Config::load(&dirs.config_file())
        .and_then(|c| c.caches())
        .unwrap_or_default();
    caches
        .into_iter()
        .filter(|c| c.name.starts_with(current.as_ref()))
        .map(|c| CompletionCandidate::new(c.name).help(Some(c.kind.url().into())))
        .collect()
}

/// One subcommand's behaviour. Returns the process exit code.
pub trait Run {
    fn run(self, ui: &Ui) -> anyhow::Result<i32>;
}

pub fn main() -> i32 {
    if let Some(code) = crate::launch::fast_exec() {
        return code;
    }
    // Answers the shell when it asks for completions (COMPLETE=SHELL); returns otherwise.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command).complete();
    let cli = Cli::parse();
    let ui = Ui {
        verbose: cli.verbose,
        quiet: cli.quiet,
        color: cli.color,
    };
    let result = match cli.command {
        Command::Use(a) => a.run(&ui),
        Command::Remove(a) => a.run(&ui),
        Command::List(a) => a.run(&ui),
        Command::Exec(a) => a.run(&ui),
        Command::Env(a) => a.run(&ui),
        Command::Login(a) => a.run(&ui),
        Command::Logout(a) => a.run(&ui),
        Command::Push(a) => a.run(&ui),
        Command::WatchStore(a) => a.run(&ui),
        Command::Secret(a) => a.run(&ui),
        Command::Aws(a) => a.run(&ui),
        Command::Doctor(a) => a.run(&ui),
        Command::ShellInit(a) => a.run(&ui),
        Command::Completions(a) => a.run(&ui),
        Command::Proxy(a) => a.run(&ui),
        Command::Service(a) => a.run(&ui),
    };
    match result {
        Ok(code) => code,
        // Its reader went away (`| head`): nothing more to say.
        Err(err) if err.chain().any(|c| c.is::<crate::ui::StdoutClosed>()) => error::EXIT_OK,
        Err(err) => {
            ui.error(&err);
            error::exit_code(&err)
        }
    }
}
