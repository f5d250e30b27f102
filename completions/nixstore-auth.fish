# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_nixstore_auth_global_optspecs
    string join \n v/verbose q/quiet color= h/help V/version
end

function __fish_nixstore_auth_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_nixstore_auth_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_nixstore_auth_using_subcommand
    set -l cmd (__fish_nixstore_auth_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -s V -l version -d 'Print version'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "use" -d 'Configure Nix to use a cache: substituter, public key, credential'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "remove" -d 'Undo what `use` added for a cache, and nothing else'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "rm" -d 'Undo what `use` added for a cache, and nothing else'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "list" -d 'Show the caches nixstore-auth knows and where each is configured'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "ls" -d 'Show the caches nixstore-auth knows and where each is configured'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "exec" -d 'Run a command with cache credentials reaching both the Nix client and the daemon'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "env" -d 'Print the current AWS session as shell variables or credential_process JSON'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "login" -d 'Get or refresh the AWS session now (MFA prompt included) and cache it'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "logout" -d 'Forget cached AWS sessions'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "push" -d 'Upload store paths (with their closure) to a cache, signed'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "watch-store" -d 'Upload every path that appears in the Nix store to a cache, until stopped'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "secret" -d 'Set, inspect or delete the secret stored for a cache'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "aws" -d 'Keep a profile\'s long-term AWS access key in the OS keyring'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "doctor" -d 'Diagnose the Nix setup, the caches and the AWS session, with a fix for each problem'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "shell-init" -d 'Print shell code that wraps nix, nix-build, ... in `nixstore-auth exec`'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "proxy" -d 'Manage the loopback signing proxy for S3 caches'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "service" -d 'Keep the proxy running in the background so that plain nix commands reach S3 caches'
complete -c nixstore-auth -n "__fish_nixstore_auth_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l name -d 'Name to record the cache under (default: the host, or the bucket)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l public-key -d 'A public key `name:base64` that signs the cache (repeatable)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l token-env -d 'Read the token from this environment variable' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l login -d 'The netrc login to write with the token' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l mode -d 'Which files to edit (auto: decided from the installed Nix)' -r -f -a "auto\t'Decide from the installed Nix: root, single-user, trusted or untrusted user, NixOS'
user\t'The user\'s nix.conf and netrc'
system\t'/etc/nix/nix.conf and the daemon\'s netrc (root only)'
print\t'Print the configuration and write nothing'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l nix-conf -d 'Edit this nix.conf instead of the one the mode picks' -r -F
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l netrc -d 'Edit this netrc file instead of the one in force' -r -F
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l format -d 'The shape of printed configuration' -r -f -a "nix-conf\t'nix.conf lines'
nixos\t'A NixOS module (`nix.settings`)'
home-manager\t'A home-manager module (`nix.settings`)'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l secret-store -d 'Where to keep the token [default: netrc; keyring on the proxy route]' -r -f -a "netrc\t'A netrc file that Nix reads directly: plain `nix build` works'
keyring\t'The OS keyring: only `nixstore-auth exec` (and the shell wrappers) reach the cache'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l route -d 'How the daemon reaches an HTTPS cache: a netrc file Nix reads, or the loopback proxy that adds the credential [default: auto, or what the cache was recorded with]' -r -f -a "auto\t'netrc for a static Basic token in a netrc file, the proxy otherwise'
netrc\t'A netrc file that Nix reads itself (Basic auth only)'
proxy\t'The loopback proxy adds the credential to each request'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l auth -d 'How the token is sent to an HTTPS cache [default: basic, or what was recorded]' -r -f -a "basic\t'`Authorization: Basic` with the login and the token (what netrc gives)'
bearer\t'`Authorization: Bearer TOKEN` (only through the proxy)'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l token-command -d 'A command that prints the token (split like a shell would, but no shell runs it); run again after the cache\'s token-ttl (300 s) or when the cache refuses the token' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l ca-file -d 'A CA bundle (PEM) that verifies the HTTPS cache, besides the system\'s and Nix\'s' -r -F
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l secret-key -d 'Record this secret key file to sign uploads to the cache (push, watch-store, exec --push)' -r -F
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l token-stdin -d 'Read the token from standard input'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l no-token -d 'The cache needs no token (a public cache signed with your own key)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l dry-run -d 'Show a diff of every file that would change, and change none'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -s y -l yes -d 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -l restart-daemon -d 'Restart the nix-daemon after writing the system nix.conf (systemd or launchd)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand use" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand remove" -l mode -d 'Which files to edit (auto: decided from the installed Nix)' -r -f -a "auto\t'Decide from the installed Nix: root, single-user, trusted or untrusted user, NixOS'
user\t'The user\'s nix.conf and netrc'
system\t'/etc/nix/nix.conf and the daemon\'s netrc (root only)'
print\t'Print the configuration and write nothing'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand remove" -l nix-conf -d 'Edit this nix.conf instead of the one the mode picks' -r -F
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand remove" -l netrc -d 'Edit this netrc file instead of the one in force' -r -F
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand remove" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand remove" -l dry-run -d 'Show a diff of every file that would change, and change none'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand remove" -s y -l yes -d 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand remove" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand remove" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand remove" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand rm" -l mode -d 'Which files to edit (auto: decided from the installed Nix)' -r -f -a "auto\t'Decide from the installed Nix: root, single-user, trusted or untrusted user, NixOS'
user\t'The user\'s nix.conf and netrc'
system\t'/etc/nix/nix.conf and the daemon\'s netrc (root only)'
print\t'Print the configuration and write nothing'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand rm" -l nix-conf -d 'Edit this nix.conf instead of the one the mode picks' -r -F
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand rm" -l netrc -d 'Edit this netrc file instead of the one in force' -r -F
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand rm" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand rm" -l dry-run -d 'Show a diff of every file that would change, and change none'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand rm" -s y -l yes -d 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand rm" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand rm" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand rm" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand list" -l format -d 'Output format' -r -f -a "text\t'Lines for people'
json\t'JSON for scripts'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand list" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand list" -l json -d 'Print JSON for scripts (the same as --format json)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand list" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand list" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand ls" -l format -d 'Output format' -r -f -a "text\t'Lines for people'
json\t'JSON for scripts'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand ls" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand ls" -l json -d 'Print JSON for scripts (the same as --format json)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand ls" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand ls" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand ls" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -l cache -d 'A recorded cache to make available (repeatable; default: every recorded S3 or keyring cache)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -l profile -d 'The AWS profile to use' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -l mfa-code -d 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -l via -d 'How S3 caches reach the daemon' -r -f -a "auto\t'Environment forwarding when the installed Nix supports it, else the proxy'
proxy\t'The loopback signing proxy'
env\t'A Nix setting that forwards environment variables to the daemon (no Nix has one yet)'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -l push -d 'Upload every path that appears in the store while CMD runs to this cache, then finish the queue before returning (repeatable; the cache is used for substitution too)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -l builder-env -d 'Also hand the AWS session to fixed-output derivation builders (impure-env, Nix >= 2.19)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -l push-strict -d 'Exit non-zero when an upload failed (CMD\'s status when it failed, else 1)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -l no-sign -d 'Upload unsigned (substituters that check signatures refuse such paths)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand exec" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand env" -l profile -d 'The AWS profile to use' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand env" -l mfa-code -d 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand env" -l format -d 'Output format' -r -f -a "sh\t'`export NAME=value` lines for sh, bash, zsh'
fish\t'`set -gx NAME value` lines for fish'
json\t'The AWS credential_process format'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand env" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand env" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand env" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand env" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand login" -l profile -d 'The AWS profile to use' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand login" -l mfa-code -d 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand login" -l duration -d 'Session length in seconds (default: the profile\'s duration_seconds, else 3600)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand login" -l mfa-session-duration -d 'Length of a new MFA base session in seconds, for role profiles with mfa_serial (default: mfa-session-duration in config.toml, else 43200)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand login" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand login" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand login" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand login" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand logout" -l profile -d 'Forget the session of this profile' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand logout" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand logout" -l all -d 'Forget every cached session'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand logout" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand logout" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand logout" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand push" -l secret-key -d 'Sign with this secret key file (default: the key recorded for the cache)' -r -F
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand push" -l profile -d 'The AWS profile to use' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand push" -l mfa-code -d 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand push" -s j -l jobs -d 'Upload this many paths at a time (1 to 64; `exec --push` reads NIXSTORE_AUTH_PUSH_JOBS)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand push" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand push" -l no-sign -d 'Upload unsigned (substituters that check signatures refuse such paths)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand push" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand push" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand push" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand watch-store" -l secret-key -d 'Sign with this secret key file (default: the key recorded for the cache)' -r -F
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand watch-store" -l profile -d 'The AWS profile to use' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand watch-store" -l mfa-code -d 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand watch-store" -s j -l jobs -d 'Upload this many paths at a time (1 to 64; `exec --push` reads NIXSTORE_AUTH_PUSH_JOBS)' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand watch-store" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand watch-store" -l no-sign -d 'Upload unsigned (substituters that check signatures refuse such paths)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand watch-store" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand watch-store" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand watch-store" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and not __fish_seen_subcommand_from set status delete help" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and not __fish_seen_subcommand_from set status delete help" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and not __fish_seen_subcommand_from set status delete help" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and not __fish_seen_subcommand_from set status delete help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and not __fish_seen_subcommand_from set status delete help" -f -a "set" -d 'Store a new token (or signing key) for a cache, from stdin or a hidden prompt'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and not __fish_seen_subcommand_from set status delete help" -f -a "status" -d 'Say where each secret lives and, for AWS sessions, when it expires'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and not __fish_seen_subcommand_from set status delete help" -f -a "delete" -d 'Delete the stored token (or signing key) of a cache'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and not __fish_seen_subcommand_from set status delete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from set" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from set" -l token-stdin -d 'Read the token from standard input'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from set" -l signing-key-stdin -d 'Read the cache\'s signing key for uploads from standard input (kept in the keyring)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from set" -l azure-key-stdin -d 'Read an Azure cache\'s storage account key from standard input (kept in the keyring)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from set" -l sas-stdin -d 'Read an Azure cache\'s SAS token from standard input (kept in the keyring)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from set" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from set" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from set" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from status" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from status" -l json -d 'Print JSON for scripts'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from delete" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from delete" -l signing-key -d 'Delete the signing key instead of the token'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from delete" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "set" -d 'Store a new token (or signing key) for a cache, from stdin or a hidden prompt'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "status" -d 'Say where each secret lives and, for AWS sessions, when it expires'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete the stored token (or signing key) of a cache'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand secret; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and not __fish_seen_subcommand_from add-key remove-key help" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and not __fish_seen_subcommand_from add-key remove-key help" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and not __fish_seen_subcommand_from add-key remove-key help" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and not __fish_seen_subcommand_from add-key remove-key help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and not __fish_seen_subcommand_from add-key remove-key help" -f -a "add-key" -d 'Store a profile\'s access key id and secret in the keyring (prompt, or two lines on stdin)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and not __fish_seen_subcommand_from add-key remove-key help" -f -a "remove-key" -d 'Delete a profile\'s stored access key'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and not __fish_seen_subcommand_from add-key remove-key help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from add-key" -l profile -d 'The profile the key belongs to' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from add-key" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from add-key" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from add-key" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from add-key" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from remove-key" -l profile -d 'The profile the key belongs to' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from remove-key" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from remove-key" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from remove-key" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from remove-key" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from help" -f -a "add-key" -d 'Store a profile\'s access key id and secret in the keyring (prompt, or two lines on stdin)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from help" -f -a "remove-key" -d 'Delete a profile\'s stored access key'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand aws; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand doctor" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand doctor" -l json -d 'Print JSON for scripts'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand doctor" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand doctor" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand shell-init" -l commands -d 'The commands to wrap, comma separated' -r
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand shell-init" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand shell-init" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand shell-init" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand shell-init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand completions" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand completions" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand completions" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -f -a "status" -d 'Show whether the proxy runs, its URL base and its caches'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -f -a "rotate-secret" -d 'Make a new URL secret (the old URLs stop working)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -f -a "stop" -d 'Stop a running proxy (a socket-activated one starts again on the next connection)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -f -a "start" -d 'Start the proxy detached (it exits when idle, unless --persistent)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -f -a "serve" -d 'Run the proxy in the foreground: what `exec`, `proxy start` and the service manager run'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -f -a "lease" -d 'Hold a lease on the proxy with credentials read from stdin (for tests and debugging)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -f -a "watch-urls" -d 'Remove FILE once stdin ends, if proxy PID wrote it (the background proxy\'s watcher)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and not __fish_seen_subcommand_from status rotate-secret stop start serve lease watch-urls help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from status" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from rotate-secret" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from rotate-secret" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from rotate-secret" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from rotate-secret" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from stop" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from stop" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from stop" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from stop" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from start" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from start" -l persistent -d 'Keep it running: mount every recorded cache it serves, renew credentials without a person, never exit when idle (the background service without a service manager)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from start" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from start" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from start" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from serve" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from serve" -l persistent -d 'A background proxy even without a service manager\'s socket'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from serve" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from serve" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from lease" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from lease" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from lease" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from lease" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from watch-urls" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from watch-urls" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from watch-urls" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from watch-urls" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show whether the proxy runs, its URL base and its caches'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from help" -f -a "rotate-secret" -d 'Make a new URL secret (the old URLs stop working)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from help" -f -a "stop" -d 'Stop a running proxy (a socket-activated one starts again on the next connection)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from help" -f -a "start" -d 'Start the proxy detached (it exits when idle, unless --persistent)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from help" -f -a "serve" -d 'Run the proxy in the foreground: what `exec`, `proxy start` and the service manager run'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from help" -f -a "lease" -d 'Hold a lease on the proxy with credentials read from stdin (for tests and debugging)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from help" -f -a "watch-urls" -d 'Remove FILE once stdin ends, if proxy PID wrote it (the background proxy\'s watcher)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand proxy; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "install" -d 'Run the proxy in the background and point your nix.conf at it (`!include`)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "uninstall" -d 'Stop the background proxy and undo what `install` wrote, byte for byte'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "status" -d 'Whether the proxy is up and serves every cache it should (exit 0; 1 otherwise; 3 when an administrator must act)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and not __fish_seen_subcommand_from install uninstall status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from install" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from install" -l dry-run -d 'Show every file it would write and the nix.conf diff, and change nothing'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from install" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from install" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l dry-run -d 'Show what it would remove, and change nothing'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from uninstall" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from uninstall" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from uninstall" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from status" -l format -d 'Output format' -r -f -a "text\t'Lines for people'
json\t'JSON for scripts'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from status" -l color -d 'When to colour output (NO_COLOR set: never, unless `always`)' -r -f -a "auto\t'When the stream is a terminal and NO_COLOR is unset'
always\t'Always (even into a pipe, and despite NO_COLOR)'
never\t'Never'"
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from status" -s v -l verbose -d 'Say more about what happens (repeat for more detail); secrets are never shown'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from status" -s q -l quiet -d 'Print only errors and warnings'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "install" -d 'Run the proxy in the background and point your nix.conf at it (`!include`)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "uninstall" -d 'Stop the background proxy and undo what `install` wrote, byte for byte'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "status" -d 'Whether the proxy is up and serves every cache it should (exit 0; 1 otherwise; 3 when an administrator must act)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "use" -d 'Configure Nix to use a cache: substituter, public key, credential'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "remove" -d 'Undo what `use` added for a cache, and nothing else'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "list" -d 'Show the caches nixstore-auth knows and where each is configured'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "exec" -d 'Run a command with cache credentials reaching both the Nix client and the daemon'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "env" -d 'Print the current AWS session as shell variables or credential_process JSON'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "login" -d 'Get or refresh the AWS session now (MFA prompt included) and cache it'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "logout" -d 'Forget cached AWS sessions'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "push" -d 'Upload store paths (with their closure) to a cache, signed'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "watch-store" -d 'Upload every path that appears in the Nix store to a cache, until stopped'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "secret" -d 'Set, inspect or delete the secret stored for a cache'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "aws" -d 'Keep a profile\'s long-term AWS access key in the OS keyring'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "doctor" -d 'Diagnose the Nix setup, the caches and the AWS session, with a fix for each problem'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "shell-init" -d 'Print shell code that wraps nix, nix-build, ... in `nixstore-auth exec`'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "completions" -d 'Print a shell completion script'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "proxy" -d 'Manage the loopback signing proxy for S3 caches'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "service" -d 'Keep the proxy running in the background so that plain nix commands reach S3 caches'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and not __fish_seen_subcommand_from use remove list exec env login logout push watch-store secret aws doctor shell-init completions proxy service help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from secret" -f -a "set" -d 'Store a new token (or signing key) for a cache, from stdin or a hidden prompt'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from secret" -f -a "status" -d 'Say where each secret lives and, for AWS sessions, when it expires'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from secret" -f -a "delete" -d 'Delete the stored token (or signing key) of a cache'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from aws" -f -a "add-key" -d 'Store a profile\'s access key id and secret in the keyring (prompt, or two lines on stdin)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from aws" -f -a "remove-key" -d 'Delete a profile\'s stored access key'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from proxy" -f -a "status" -d 'Show whether the proxy runs, its URL base and its caches'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from proxy" -f -a "rotate-secret" -d 'Make a new URL secret (the old URLs stop working)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from proxy" -f -a "stop" -d 'Stop a running proxy (a socket-activated one starts again on the next connection)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from proxy" -f -a "start" -d 'Start the proxy detached (it exits when idle, unless --persistent)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from proxy" -f -a "serve" -d 'Run the proxy in the foreground: what `exec`, `proxy start` and the service manager run'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from proxy" -f -a "lease" -d 'Hold a lease on the proxy with credentials read from stdin (for tests and debugging)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from proxy" -f -a "watch-urls" -d 'Remove FILE once stdin ends, if proxy PID wrote it (the background proxy\'s watcher)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "install" -d 'Run the proxy in the background and point your nix.conf at it (`!include`)'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "uninstall" -d 'Stop the background proxy and undo what `install` wrote, byte for byte'
complete -c nixstore-auth -n "__fish_nixstore_auth_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "status" -d 'Whether the proxy is up and serves every cache it should (exit 0; 1 otherwise; 3 when an administrator must act)'
