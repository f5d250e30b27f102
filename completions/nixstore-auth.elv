
use builtin;
use str;

set edit:completion:arg-completer[nixstore-auth] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'nixstore-auth'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'nixstore-auth'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand use 'Configure Nix to use a cache: substituter, public key, credential'
            cand remove 'Undo what `use` added for a cache, and nothing else'
            cand rm 'Undo what `use` added for a cache, and nothing else'
            cand list 'Show the caches nixstore-auth knows and where each is configured'
            cand ls 'Show the caches nixstore-auth knows and where each is configured'
            cand exec 'Run a command with cache credentials reaching both the Nix client and the daemon'
            cand env 'Print the current AWS session as shell variables or credential_process JSON'
            cand login 'Get or refresh the AWS session now (MFA prompt included) and cache it'
            cand logout 'Forget cached AWS sessions'
            cand push 'Upload store paths (with their closure) to a cache, signed'
            cand watch-store 'Upload every path that appears in the Nix store to a cache, until stopped'
            cand secret 'Set, inspect or delete the secret stored for a cache'
            cand aws 'Keep a profile''s long-term AWS access key in the OS keyring'
            cand doctor 'Diagnose the Nix setup, the caches and the AWS session, with a fix for each problem'
            cand shell-init 'Print shell code that wraps nix, nix-build, ... in `nixstore-auth exec`'
            cand completions 'Print a shell completion script'
            cand proxy 'Manage the loopback signing proxy for S3 caches'
            cand service 'Keep the proxy running in the background so that plain nix commands reach S3 caches'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'nixstore-auth;use'= {
            cand --name 'Name to record the cache under (default: the host, or the bucket)'
            cand --public-key 'A public key `name:base64` that signs the cache (repeatable)'
            cand --token-env 'Read the token from this environment variable'
            cand --login 'The netrc login to write with the token'
            cand --mode 'Which files to edit (auto: decided from the installed Nix)'
            cand --nix-conf 'Edit this nix.conf instead of the one the mode picks'
            cand --netrc 'Edit this netrc file instead of the one in force'
            cand --format 'The shape of printed configuration'
            cand --secret-store 'Where to keep the token [default: netrc; keyring on the proxy route]'
            cand --route 'How the daemon reaches an HTTPS cache: a netrc file Nix reads, or the loopback proxy that adds the credential [default: auto, or what the cache was recorded with]'
            cand --auth 'How the token is sent to an HTTPS cache [default: basic, or what was recorded]'
            cand --token-command 'A command that prints the token (split like a shell would, but no shell runs it); run again after the cache''s token-ttl (300 s) or when the cache refuses the token'
            cand --ca-file 'A CA bundle (PEM) that verifies the HTTPS cache, besides the system''s and Nix''s'
            cand --secret-key 'Record this secret key file to sign uploads to the cache (push, watch-store, exec --push)'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --token-stdin 'Read the token from standard input'
            cand --no-token 'The cache needs no token (a public cache signed with your own key)'
            cand --dry-run 'Show a diff of every file that would change, and change none'
            cand -y 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)'
            cand --yes 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)'
            cand --restart-daemon 'Restart the nix-daemon after writing the system nix.conf (systemd or launchd)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;remove'= {
            cand --mode 'Which files to edit (auto: decided from the installed Nix)'
            cand --nix-conf 'Edit this nix.conf instead of the one the mode picks'
            cand --netrc 'Edit this netrc file instead of the one in force'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --dry-run 'Show a diff of every file that would change, and change none'
            cand -y 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)'
            cand --yes 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;rm'= {
            cand --mode 'Which files to edit (auto: decided from the installed Nix)'
            cand --nix-conf 'Edit this nix.conf instead of the one the mode picks'
            cand --netrc 'Edit this netrc file instead of the one in force'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --dry-run 'Show a diff of every file that would change, and change none'
            cand -y 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)'
            cand --yes 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;list'= {
            cand --format 'Output format'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --json 'Print JSON for scripts (the same as --format json)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;ls'= {
            cand --format 'Output format'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --json 'Print JSON for scripts (the same as --format json)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;exec'= {
            cand --cache 'A recorded cache to make available (repeatable; default: every recorded S3 or keyring cache)'
            cand --profile 'The AWS profile to use'
            cand --mfa-code 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)'
            cand --via 'How S3 caches reach the daemon'
            cand --push 'Upload every path that appears in the store while CMD runs to this cache, then finish the queue before returning (repeatable; the cache is used for substitution too)'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --builder-env 'Also hand the AWS session to fixed-output derivation builders (impure-env, Nix >= 2.19)'
            cand --push-strict 'Exit non-zero when an upload failed (CMD''s status when it failed, else 1)'
            cand --no-sign 'Upload unsigned (substituters that check signatures refuse such paths)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;env'= {
            cand --profile 'The AWS profile to use'
            cand --mfa-code 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)'
            cand --format 'Output format'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;login'= {
            cand --profile 'The AWS profile to use'
            cand --mfa-code 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)'
            cand --duration 'Session length in seconds (default: the profile''s duration_seconds, else 3600)'
            cand --mfa-session-duration 'Length of a new MFA base session in seconds, for role profiles with mfa_serial (default: mfa-session-duration in config.toml, else 43200)'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;logout'= {
            cand --profile 'Forget the session of this profile'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --all 'Forget every cached session'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;push'= {
            cand --secret-key 'Sign with this secret key file (default: the key recorded for the cache)'
            cand --profile 'The AWS profile to use'
            cand --mfa-code 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)'
            cand -j 'Upload this many paths at a time (1 to 64; `exec --push` reads NIXSTORE_AUTH_PUSH_JOBS)'
            cand --jobs 'Upload this many paths at a time (1 to 64; `exec --push` reads NIXSTORE_AUTH_PUSH_JOBS)'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --no-sign 'Upload unsigned (substituters that check signatures refuse such paths)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;watch-store'= {
            cand --secret-key 'Sign with this secret key file (default: the key recorded for the cache)'
            cand --profile 'The AWS profile to use'
            cand --mfa-code 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)'
            cand -j 'Upload this many paths at a time (1 to 64; `exec --push` reads NIXSTORE_AUTH_PUSH_JOBS)'
            cand --jobs 'Upload this many paths at a time (1 to 64; `exec --push` reads NIXSTORE_AUTH_PUSH_JOBS)'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --no-sign 'Upload unsigned (substituters that check signatures refuse such paths)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;secret'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand set 'Store a new token (or signing key) for a cache, from stdin or a hidden prompt'
            cand status 'Say where each secret lives and, for AWS sessions, when it expires'
            cand delete 'Delete the stored token (or signing key) of a cache'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'nixstore-auth;secret;set'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --token-stdin 'Read the token from standard input'
            cand --signing-key-stdin 'Read the cache''s signing key for uploads from standard input (kept in the keyring)'
            cand --azure-key-stdin 'Read an Azure cache''s storage account key from standard input (kept in the keyring)'
            cand --sas-stdin 'Read an Azure cache''s SAS token from standard input (kept in the keyring)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;secret;status'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --json 'Print JSON for scripts'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;secret;delete'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --signing-key 'Delete the signing key instead of the token'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;secret;help'= {
            cand set 'Store a new token (or signing key) for a cache, from stdin or a hidden prompt'
            cand status 'Say where each secret lives and, for AWS sessions, when it expires'
            cand delete 'Delete the stored token (or signing key) of a cache'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'nixstore-auth;secret;help;set'= {
        }
        &'nixstore-auth;secret;help;status'= {
        }
        &'nixstore-auth;secret;help;delete'= {
        }
        &'nixstore-auth;secret;help;help'= {
        }
        &'nixstore-auth;aws'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand add-key 'Store a profile''s access key id and secret in the keyring (prompt, or two lines on stdin)'
            cand remove-key 'Delete a profile''s stored access key'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'nixstore-auth;aws;add-key'= {
            cand --profile 'The profile the key belongs to'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;aws;remove-key'= {
            cand --profile 'The profile the key belongs to'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;aws;help'= {
            cand add-key 'Store a profile''s access key id and secret in the keyring (prompt, or two lines on stdin)'
            cand remove-key 'Delete a profile''s stored access key'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'nixstore-auth;aws;help;add-key'= {
        }
        &'nixstore-auth;aws;help;remove-key'= {
        }
        &'nixstore-auth;aws;help;help'= {
        }
        &'nixstore-auth;doctor'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --json 'Print JSON for scripts'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;shell-init'= {
            cand --commands 'The commands to wrap, comma separated'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;completions'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;proxy'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand status 'Show whether the proxy runs, its URL base and its caches'
            cand rotate-secret 'Make a new URL secret (the old URLs stop working)'
            cand stop 'Stop a running proxy (a socket-activated one starts again on the next connection)'
            cand start 'Start the proxy detached (it exits when idle, unless --persistent)'
            cand serve 'Run the proxy in the foreground: what `exec`, `proxy start` and the service manager run'
            cand lease 'Hold a lease on the proxy with credentials read from stdin (for tests and debugging)'
            cand watch-urls 'Remove FILE once stdin ends, if proxy PID wrote it (the background proxy''s watcher)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'nixstore-auth;proxy;status'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;proxy;rotate-secret'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;proxy;stop'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;proxy;start'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --persistent 'Keep it running: mount every recorded cache it serves, renew credentials without a person, never exit when idle (the background service without a service manager)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;proxy;serve'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --persistent 'A background proxy even without a service manager''s socket'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;proxy;lease'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;proxy;watch-urls'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;proxy;help'= {
            cand status 'Show whether the proxy runs, its URL base and its caches'
            cand rotate-secret 'Make a new URL secret (the old URLs stop working)'
            cand stop 'Stop a running proxy (a socket-activated one starts again on the next connection)'
            cand start 'Start the proxy detached (it exits when idle, unless --persistent)'
            cand serve 'Run the proxy in the foreground: what `exec`, `proxy start` and the service manager run'
            cand lease 'Hold a lease on the proxy with credentials read from stdin (for tests and debugging)'
            cand watch-urls 'Remove FILE once stdin ends, if proxy PID wrote it (the background proxy''s watcher)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'nixstore-auth;proxy;help;status'= {
        }
        &'nixstore-auth;proxy;help;rotate-secret'= {
        }
        &'nixstore-auth;proxy;help;stop'= {
        }
        &'nixstore-auth;proxy;help;start'= {
        }
        &'nixstore-auth;proxy;help;serve'= {
        }
        &'nixstore-auth;proxy;help;lease'= {
        }
        &'nixstore-auth;proxy;help;watch-urls'= {
        }
        &'nixstore-auth;proxy;help;help'= {
        }
        &'nixstore-auth;service'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand install 'Run the proxy in the background and point your nix.conf at it (`!include`)'
            cand uninstall 'Stop the background proxy and undo what `install` wrote, byte for byte'
            cand status 'Whether the proxy is up and serves every cache it should (exit 0; 1 otherwise; 3 when an administrator must act)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'nixstore-auth;service;install'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --dry-run 'Show every file it would write and the nix.conf diff, and change nothing'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;service;uninstall'= {
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand --dry-run 'Show what it would remove, and change nothing'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;service;status'= {
            cand --format 'Output format'
            cand --color 'When to colour output (NO_COLOR set: never, unless `always`)'
            cand -v 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand --verbose 'Say more about what happens (repeat for more detail); secrets are never shown'
            cand -q 'Print only errors and warnings'
            cand --quiet 'Print only errors and warnings'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
        }
        &'nixstore-auth;service;help'= {
            cand install 'Run the proxy in the background and point your nix.conf at it (`!include`)'
            cand uninstall 'Stop the background proxy and undo what `install` wrote, byte for byte'
            cand status 'Whether the proxy is up and serves every cache it should (exit 0; 1 otherwise; 3 when an administrator must act)'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'nixstore-auth;service;help;install'= {
        }
        &'nixstore-auth;service;help;uninstall'= {
        }
        &'nixstore-auth;service;help;status'= {
        }
        &'nixstore-auth;service;help;help'= {
        }
        &'nixstore-auth;help'= {
            cand use 'Configure Nix to use a cache: substituter, public key, credential'
            cand remove 'Undo what `use` added for a cache, and nothing else'
            cand list 'Show the caches nixstore-auth knows and where each is configured'
            cand exec 'Run a command with cache credentials reaching both the Nix client and the daemon'
            cand env 'Print the current AWS session as shell variables or credential_process JSON'
            cand login 'Get or refresh the AWS session now (MFA prompt included) and cache it'
            cand logout 'Forget cached AWS sessions'
            cand push 'Upload store paths (with their closure) to a cache, signed'
            cand watch-store 'Upload every path that appears in the Nix store to a cache, until stopped'
            cand secret 'Set, inspect or delete the secret stored for a cache'
            cand aws 'Keep a profile''s long-term AWS access key in the OS keyring'
            cand doctor 'Diagnose the Nix setup, the caches and the AWS session, with a fix for each problem'
            cand shell-init 'Print shell code that wraps nix, nix-build, ... in `nixstore-auth exec`'
            cand completions 'Print a shell completion script'
            cand proxy 'Manage the loopback signing proxy for S3 caches'
            cand service 'Keep the proxy running in the background so that plain nix commands reach S3 caches'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'nixstore-auth;help;use'= {
        }
        &'nixstore-auth;help;remove'= {
        }
        &'nixstore-auth;help;list'= {
        }
        &'nixstore-auth;help;exec'= {
        }
        &'nixstore-auth;help;env'= {
        }
        &'nixstore-auth;help;login'= {
        }
        &'nixstore-auth;help;logout'= {
        }
        &'nixstore-auth;help;push'= {
        }
        &'nixstore-auth;help;watch-store'= {
        }
        &'nixstore-auth;help;secret'= {
            cand set 'Store a new token (or signing key) for a cache, from stdin or a hidden prompt'
            cand status 'Say where each secret lives and, for AWS sessions, when it expires'
            cand delete 'Delete the stored token (or signing key) of a cache'
        }
        &'nixstore-auth;help;secret;set'= {
        }
        &'nixstore-auth;help;secret;status'= {
        }
        &'nixstore-auth;help;secret;delete'= {
        }
        &'nixstore-auth;help;aws'= {
            cand add-key 'Store a profile''s access key id and secret in the keyring (prompt, or two lines on stdin)'
            cand remove-key 'Delete a profile''s stored access key'
        }
        &'nixstore-auth;help;aws;add-key'= {
        }
        &'nixstore-auth;help;aws;remove-key'= {
        }
        &'nixstore-auth;help;doctor'= {
        }
        &'nixstore-auth;help;shell-init'= {
        }
        &'nixstore-auth;help;completions'= {
        }
        &'nixstore-auth;help;proxy'= {
            cand status 'Show whether the proxy runs, its URL base and its caches'
            cand rotate-secret 'Make a new URL secret (the old URLs stop working)'
            cand stop 'Stop a running proxy (a socket-activated one starts again on the next connection)'
            cand start 'Start the proxy detached (it exits when idle, unless --persistent)'
            cand serve 'Run the proxy in the foreground: what `exec`, `proxy start` and the service manager run'
            cand lease 'Hold a lease on the proxy with credentials read from stdin (for tests and debugging)'
            cand watch-urls 'Remove FILE once stdin ends, if proxy PID wrote it (the background proxy''s watcher)'
        }
        &'nixstore-auth;help;proxy;status'= {
        }
        &'nixstore-auth;help;proxy;rotate-secret'= {
        }
        &'nixstore-auth;help;proxy;stop'= {
        }
        &'nixstore-auth;help;proxy;start'= {
        }
        &'nixstore-auth;help;proxy;serve'= {
        }
        &'nixstore-auth;help;proxy;lease'= {
        }
        &'nixstore-auth;help;proxy;watch-urls'= {
        }
        &'nixstore-auth;help;service'= {
            cand install 'Run the proxy in the background and point your nix.conf at it (`!include`)'
            cand uninstall 'Stop the background proxy and undo what `install` wrote, byte for byte'
            cand status 'Whether the proxy is up and serves every cache it should (exit 0; 1 otherwise; 3 when an administrator must act)'
        }
        &'nixstore-auth;help;service;install'= {
        }
        &'nixstore-auth;help;service;uninstall'= {
        }
        &'nixstore-auth;help;service;status'= {
        }
        &'nixstore-auth;help;help'= {
        }
    ]
    $completions[$command]
}
