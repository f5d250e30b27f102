
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'nixstore-auth' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'nixstore-auth'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'nixstore-auth' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('use', 'use', [CompletionResultType]::ParameterValue, 'Configure Nix to use a cache: substituter, public key, credential')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Undo what `use` added for a cache, and nothing else')
            [CompletionResult]::new('rm', 'rm', [CompletionResultType]::ParameterValue, 'Undo what `use` added for a cache, and nothing else')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'Show the caches nixstore-auth knows and where each is configured')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'Show the caches nixstore-auth knows and where each is configured')
            [CompletionResult]::new('exec', 'exec', [CompletionResultType]::ParameterValue, 'Run a command with cache credentials reaching both the Nix client and the daemon')
            [CompletionResult]::new('env', 'env', [CompletionResultType]::ParameterValue, 'Print the current AWS session as shell variables or credential_process JSON')
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Get or refresh the AWS session now (MFA prompt included) and cache it')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Forget cached AWS sessions')
            [CompletionResult]::new('push', 'push', [CompletionResultType]::ParameterValue, 'Upload store paths (with their closure) to a cache, signed')
            [CompletionResult]::new('watch-store', 'watch-store', [CompletionResultType]::ParameterValue, 'Upload every path that appears in the Nix store to a cache, until stopped')
            [CompletionResult]::new('secret', 'secret', [CompletionResultType]::ParameterValue, 'Set, inspect or delete the secret stored for a cache')
            [CompletionResult]::new('aws', 'aws', [CompletionResultType]::ParameterValue, 'Keep a profile''s long-term AWS access key in the OS keyring')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Diagnose the Nix setup, the caches and the AWS session, with a fix for each problem')
            [CompletionResult]::new('shell-init', 'shell-init', [CompletionResultType]::ParameterValue, 'Print shell code that wraps nix, nix-build, ... in `nixstore-auth exec`')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('proxy', 'proxy', [CompletionResultType]::ParameterValue, 'Manage the loopback signing proxy for S3 caches')
            [CompletionResult]::new('service', 'service', [CompletionResultType]::ParameterValue, 'Keep the proxy running in the background so that plain nix commands reach S3 caches')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'nixstore-auth;use' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'Name to record the cache under (default: the host, or the bucket)')
            [CompletionResult]::new('--public-key', '--public-key', [CompletionResultType]::ParameterName, 'A public key `name:base64` that signs the cache (repeatable)')
            [CompletionResult]::new('--token-env', '--token-env', [CompletionResultType]::ParameterName, 'Read the token from this environment variable')
            [CompletionResult]::new('--login', '--login', [CompletionResultType]::ParameterName, 'The netrc login to write with the token')
            [CompletionResult]::new('--mode', '--mode', [CompletionResultType]::ParameterName, 'Which files to edit (auto: decided from the installed Nix)')
            [CompletionResult]::new('--nix-conf', '--nix-conf', [CompletionResultType]::ParameterName, 'Edit this nix.conf instead of the one the mode picks')
            [CompletionResult]::new('--netrc', '--netrc', [CompletionResultType]::ParameterName, 'Edit this netrc file instead of the one in force')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'The shape of printed configuration')
            [CompletionResult]::new('--secret-store', '--secret-store', [CompletionResultType]::ParameterName, 'Where to keep the token [default: netrc; keyring on the proxy route]')
            [CompletionResult]::new('--route', '--route', [CompletionResultType]::ParameterName, 'How the daemon reaches an HTTPS cache: a netrc file Nix reads, or the loopback proxy that adds the credential [default: auto, or what the cache was recorded with]')
            [CompletionResult]::new('--auth', '--auth', [CompletionResultType]::ParameterName, 'How the token is sent to an HTTPS cache [default: basic, or what was recorded]')
            [CompletionResult]::new('--token-command', '--token-command', [CompletionResultType]::ParameterName, 'A command that prints the token (split like a shell would, but no shell runs it); run again after the cache''s token-ttl (300 s) or when the cache refuses the token')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'A CA bundle (PEM) that verifies the HTTPS cache, besides the system''s and Nix''s')
            [CompletionResult]::new('--secret-key', '--secret-key', [CompletionResultType]::ParameterName, 'Record this secret key file to sign uploads to the cache (push, watch-store, exec --push)')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--token-stdin', '--token-stdin', [CompletionResultType]::ParameterName, 'Read the token from standard input')
            [CompletionResult]::new('--no-token', '--no-token', [CompletionResultType]::ParameterName, 'The cache needs no token (a public cache signed with your own key)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show a diff of every file that would change, and change none')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)')
            [CompletionResult]::new('--restart-daemon', '--restart-daemon', [CompletionResultType]::ParameterName, 'Restart the nix-daemon after writing the system nix.conf (systemd or launchd)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;remove' {
            [CompletionResult]::new('--mode', '--mode', [CompletionResultType]::ParameterName, 'Which files to edit (auto: decided from the installed Nix)')
            [CompletionResult]::new('--nix-conf', '--nix-conf', [CompletionResultType]::ParameterName, 'Edit this nix.conf instead of the one the mode picks')
            [CompletionResult]::new('--netrc', '--netrc', [CompletionResultType]::ParameterName, 'Edit this netrc file instead of the one in force')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show a diff of every file that would change, and change none')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;rm' {
            [CompletionResult]::new('--mode', '--mode', [CompletionResultType]::ParameterName, 'Which files to edit (auto: decided from the installed Nix)')
            [CompletionResult]::new('--nix-conf', '--nix-conf', [CompletionResultType]::ParameterName, 'Edit this nix.conf instead of the one the mode picks')
            [CompletionResult]::new('--netrc', '--netrc', [CompletionResultType]::ParameterName, 'Edit this netrc file instead of the one in force')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show a diff of every file that would change, and change none')
            [CompletionResult]::new('-y', '-y', [CompletionResultType]::ParameterName, 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)')
            [CompletionResult]::new('--yes', '--yes', [CompletionResultType]::ParameterName, 'Answer yes to questions (hiding /etc/nix/netrc, moving a token)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;list' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts (the same as --format json)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;ls' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts (the same as --format json)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;exec' {
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'A recorded cache to make available (repeatable; default: every recorded S3 or keyring cache)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'The AWS profile to use')
            [CompletionResult]::new('--mfa-code', '--mfa-code', [CompletionResultType]::ParameterName, 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)')
            [CompletionResult]::new('--via', '--via', [CompletionResultType]::ParameterName, 'How S3 caches reach the daemon')
            [CompletionResult]::new('--push', '--push', [CompletionResultType]::ParameterName, 'Upload every path that appears in the store while CMD runs to this cache, then finish the queue before returning (repeatable; the cache is used for substitution too)')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--builder-env', '--builder-env', [CompletionResultType]::ParameterName, 'Also hand the AWS session to fixed-output derivation builders (impure-env, Nix >= 2.19)')
            [CompletionResult]::new('--push-strict', '--push-strict', [CompletionResultType]::ParameterName, 'Exit non-zero when an upload failed (CMD''s status when it failed, else 1)')
            [CompletionResult]::new('--no-sign', '--no-sign', [CompletionResultType]::ParameterName, 'Upload unsigned (substituters that check signatures refuse such paths)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;env' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'The AWS profile to use')
            [CompletionResult]::new('--mfa-code', '--mfa-code', [CompletionResultType]::ParameterName, 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)')
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;login' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'The AWS profile to use')
            [CompletionResult]::new('--mfa-code', '--mfa-code', [CompletionResultType]::ParameterName, 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'Session length in seconds (default: the profile''s duration_seconds, else 3600)')
            [CompletionResult]::new('--mfa-session-duration', '--mfa-session-duration', [CompletionResultType]::ParameterName, 'Length of a new MFA base session in seconds, for role profiles with mfa_serial (default: mfa-session-duration in config.toml, else 43200)')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;logout' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'Forget the session of this profile')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Forget every cached session')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;push' {
            [CompletionResult]::new('--secret-key', '--secret-key', [CompletionResultType]::ParameterName, 'Sign with this secret key file (default: the key recorded for the cache)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'The AWS profile to use')
            [CompletionResult]::new('--mfa-code', '--mfa-code', [CompletionResultType]::ParameterName, 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)')
            [CompletionResult]::new('-j', '-j', [CompletionResultType]::ParameterName, 'Upload this many paths at a time (1 to 64; `exec --push` reads NIXSTORE_AUTH_PUSH_JOBS)')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Upload this many paths at a time (1 to 64; `exec --push` reads NIXSTORE_AUTH_PUSH_JOBS)')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--no-sign', '--no-sign', [CompletionResultType]::ParameterName, 'Upload unsigned (substituters that check signatures refuse such paths)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;watch-store' {
            [CompletionResult]::new('--secret-key', '--secret-key', [CompletionResultType]::ParameterName, 'Sign with this secret key file (default: the key recorded for the cache)')
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'The AWS profile to use')
            [CompletionResult]::new('--mfa-code', '--mfa-code', [CompletionResultType]::ParameterName, 'A one-time MFA code (or NIXSTORE_AUTH_MFA_CODE)')
            [CompletionResult]::new('-j', '-j', [CompletionResultType]::ParameterName, 'Upload this many paths at a time (1 to 64; `exec --push` reads NIXSTORE_AUTH_PUSH_JOBS)')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Upload this many paths at a time (1 to 64; `exec --push` reads NIXSTORE_AUTH_PUSH_JOBS)')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--no-sign', '--no-sign', [CompletionResultType]::ParameterName, 'Upload unsigned (substituters that check signatures refuse such paths)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;secret' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Store a new token (or signing key) for a cache, from stdin or a hidden prompt')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Say where each secret lives and, for AWS sessions, when it expires')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the stored token (or signing key) of a cache')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'nixstore-auth;secret;set' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--token-stdin', '--token-stdin', [CompletionResultType]::ParameterName, 'Read the token from standard input')
            [CompletionResult]::new('--signing-key-stdin', '--signing-key-stdin', [CompletionResultType]::ParameterName, 'Read the cache''s signing key for uploads from standard input (kept in the keyring)')
            [CompletionResult]::new('--azure-key-stdin', '--azure-key-stdin', [CompletionResultType]::ParameterName, 'Read an Azure cache''s storage account key from standard input (kept in the keyring)')
            [CompletionResult]::new('--sas-stdin', '--sas-stdin', [CompletionResultType]::ParameterName, 'Read an Azure cache''s SAS token from standard input (kept in the keyring)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;secret;status' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;secret;delete' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--signing-key', '--signing-key', [CompletionResultType]::ParameterName, 'Delete the signing key instead of the token')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;secret;help' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Store a new token (or signing key) for a cache, from stdin or a hidden prompt')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Say where each secret lives and, for AWS sessions, when it expires')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the stored token (or signing key) of a cache')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'nixstore-auth;secret;help;set' {
            break
        }
        'nixstore-auth;secret;help;status' {
            break
        }
        'nixstore-auth;secret;help;delete' {
            break
        }
        'nixstore-auth;secret;help;help' {
            break
        }
        'nixstore-auth;aws' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('add-key', 'add-key', [CompletionResultType]::ParameterValue, 'Store a profile''s access key id and secret in the keyring (prompt, or two lines on stdin)')
            [CompletionResult]::new('remove-key', 'remove-key', [CompletionResultType]::ParameterValue, 'Delete a profile''s stored access key')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'nixstore-auth;aws;add-key' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'The profile the key belongs to')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;aws;remove-key' {
            [CompletionResult]::new('--profile', '--profile', [CompletionResultType]::ParameterName, 'The profile the key belongs to')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;aws;help' {
            [CompletionResult]::new('add-key', 'add-key', [CompletionResultType]::ParameterValue, 'Store a profile''s access key id and secret in the keyring (prompt, or two lines on stdin)')
            [CompletionResult]::new('remove-key', 'remove-key', [CompletionResultType]::ParameterValue, 'Delete a profile''s stored access key')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'nixstore-auth;aws;help;add-key' {
            break
        }
        'nixstore-auth;aws;help;remove-key' {
            break
        }
        'nixstore-auth;aws;help;help' {
            break
        }
        'nixstore-auth;doctor' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print JSON for scripts')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;shell-init' {
            [CompletionResult]::new('--commands', '--commands', [CompletionResultType]::ParameterName, 'The commands to wrap, comma separated')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;completions' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;proxy' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether the proxy runs, its URL base and its caches')
            [CompletionResult]::new('rotate-secret', 'rotate-secret', [CompletionResultType]::ParameterValue, 'Make a new URL secret (the old URLs stop working)')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop a running proxy (a socket-activated one starts again on the next connection)')
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the proxy detached (it exits when idle, unless --persistent)')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the proxy in the foreground: what `exec`, `proxy start` and the service manager run')
            [CompletionResult]::new('lease', 'lease', [CompletionResultType]::ParameterValue, 'Hold a lease on the proxy with credentials read from stdin (for tests and debugging)')
            [CompletionResult]::new('watch-urls', 'watch-urls', [CompletionResultType]::ParameterValue, 'Remove FILE once stdin ends, if proxy PID wrote it (the background proxy''s watcher)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'nixstore-auth;proxy;status' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;proxy;rotate-secret' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;proxy;stop' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;proxy;start' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--persistent', '--persistent', [CompletionResultType]::ParameterName, 'Keep it running: mount every recorded cache it serves, renew credentials without a person, never exit when idle (the background service without a service manager)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;proxy;serve' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--persistent', '--persistent', [CompletionResultType]::ParameterName, 'A background proxy even without a service manager''s socket')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;proxy;lease' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;proxy;watch-urls' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;proxy;help' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether the proxy runs, its URL base and its caches')
            [CompletionResult]::new('rotate-secret', 'rotate-secret', [CompletionResultType]::ParameterValue, 'Make a new URL secret (the old URLs stop working)')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop a running proxy (a socket-activated one starts again on the next connection)')
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the proxy detached (it exits when idle, unless --persistent)')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the proxy in the foreground: what `exec`, `proxy start` and the service manager run')
            [CompletionResult]::new('lease', 'lease', [CompletionResultType]::ParameterValue, 'Hold a lease on the proxy with credentials read from stdin (for tests and debugging)')
            [CompletionResult]::new('watch-urls', 'watch-urls', [CompletionResultType]::ParameterValue, 'Remove FILE once stdin ends, if proxy PID wrote it (the background proxy''s watcher)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'nixstore-auth;proxy;help;status' {
            break
        }
        'nixstore-auth;proxy;help;rotate-secret' {
            break
        }
        'nixstore-auth;proxy;help;stop' {
            break
        }
        'nixstore-auth;proxy;help;start' {
            break
        }
        'nixstore-auth;proxy;help;serve' {
            break
        }
        'nixstore-auth;proxy;help;lease' {
            break
        }
        'nixstore-auth;proxy;help;watch-urls' {
            break
        }
        'nixstore-auth;proxy;help;help' {
            break
        }
        'nixstore-auth;service' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Run the proxy in the background and point your nix.conf at it (`!include`)')
            [CompletionResult]::new('uninstall', 'uninstall', [CompletionResultType]::ParameterValue, 'Stop the background proxy and undo what `install` wrote, byte for byte')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Whether the proxy is up and serves every cache it should (exit 0; 1 otherwise; 3 when an administrator must act)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'nixstore-auth;service;install' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show every file it would write and the nix.conf diff, and change nothing')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;service;uninstall' {
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show what it would remove, and change nothing')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;service;status' {
            [CompletionResult]::new('--format', '--format', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--color', '--color', [CompletionResultType]::ParameterName, 'When to colour output (NO_COLOR set: never, unless `always`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'Say more about what happens (repeat for more detail); secrets are never shown')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Print only errors and warnings')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'nixstore-auth;service;help' {
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Run the proxy in the background and point your nix.conf at it (`!include`)')
            [CompletionResult]::new('uninstall', 'uninstall', [CompletionResultType]::ParameterValue, 'Stop the background proxy and undo what `install` wrote, byte for byte')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Whether the proxy is up and serves every cache it should (exit 0; 1 otherwise; 3 when an administrator must act)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'nixstore-auth;service;help;install' {
            break
        }
        'nixstore-auth;service;help;uninstall' {
            break
        }
        'nixstore-auth;service;help;status' {
            break
        }
        'nixstore-auth;service;help;help' {
            break
        }
        'nixstore-auth;help' {
            [CompletionResult]::new('use', 'use', [CompletionResultType]::ParameterValue, 'Configure Nix to use a cache: substituter, public key, credential')
            [CompletionResult]::new('remove', 'remove', [CompletionResultType]::ParameterValue, 'Undo what `use` added for a cache, and nothing else')
            [CompletionResult]::new('list', 'list', [CompletionResultType]::ParameterValue, 'Show the caches nixstore-auth knows and where each is configured')
            [CompletionResult]::new('exec', 'exec', [CompletionResultType]::ParameterValue, 'Run a command with cache credentials reaching both the Nix client and the daemon')
            [CompletionResult]::new('env', 'env', [CompletionResultType]::ParameterValue, 'Print the current AWS session as shell variables or credential_process JSON')
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Get or refresh the AWS session now (MFA prompt included) and cache it')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Forget cached AWS sessions')
            [CompletionResult]::new('push', 'push', [CompletionResultType]::ParameterValue, 'Upload store paths (with their closure) to a cache, signed')
            [CompletionResult]::new('watch-store', 'watch-store', [CompletionResultType]::ParameterValue, 'Upload every path that appears in the Nix store to a cache, until stopped')
            [CompletionResult]::new('secret', 'secret', [CompletionResultType]::ParameterValue, 'Set, inspect or delete the secret stored for a cache')
            [CompletionResult]::new('aws', 'aws', [CompletionResultType]::ParameterValue, 'Keep a profile''s long-term AWS access key in the OS keyring')
            [CompletionResult]::new('doctor', 'doctor', [CompletionResultType]::ParameterValue, 'Diagnose the Nix setup, the caches and the AWS session, with a fix for each problem')
            [CompletionResult]::new('shell-init', 'shell-init', [CompletionResultType]::ParameterValue, 'Print shell code that wraps nix, nix-build, ... in `nixstore-auth exec`')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('proxy', 'proxy', [CompletionResultType]::ParameterValue, 'Manage the loopback signing proxy for S3 caches')
            [CompletionResult]::new('service', 'service', [CompletionResultType]::ParameterValue, 'Keep the proxy running in the background so that plain nix commands reach S3 caches')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'nixstore-auth;help;use' {
            break
        }
        'nixstore-auth;help;remove' {
            break
        }
        'nixstore-auth;help;list' {
            break
        }
        'nixstore-auth;help;exec' {
            break
        }
        'nixstore-auth;help;env' {
            break
        }
        'nixstore-auth;help;login' {
            break
        }
        'nixstore-auth;help;logout' {
            break
        }
        'nixstore-auth;help;push' {
            break
        }
        'nixstore-auth;help;watch-store' {
            break
        }
        'nixstore-auth;help;secret' {
            [CompletionResult]::new('set', 'set', [CompletionResultType]::ParameterValue, 'Store a new token (or signing key) for a cache, from stdin or a hidden prompt')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Say where each secret lives and, for AWS sessions, when it expires')
            [CompletionResult]::new('delete', 'delete', [CompletionResultType]::ParameterValue, 'Delete the stored token (or signing key) of a cache')
            break
        }
        'nixstore-auth;help;secret;set' {
            break
        }
        'nixstore-auth;help;secret;status' {
            break
        }
        'nixstore-auth;help;secret;delete' {
            break
        }
        'nixstore-auth;help;aws' {
            [CompletionResult]::new('add-key', 'add-key', [CompletionResultType]::ParameterValue, 'Store a profile''s access key id and secret in the keyring (prompt, or two lines on stdin)')
            [CompletionResult]::new('remove-key', 'remove-key', [CompletionResultType]::ParameterValue, 'Delete a profile''s stored access key')
            break
        }
        'nixstore-auth;help;aws;add-key' {
            break
        }
        'nixstore-auth;help;aws;remove-key' {
            break
        }
        'nixstore-auth;help;doctor' {
            break
        }
        'nixstore-auth;help;shell-init' {
            break
        }
        'nixstore-auth;help;completions' {
            break
        }
        'nixstore-auth;help;proxy' {
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show whether the proxy runs, its URL base and its caches')
            [CompletionResult]::new('rotate-secret', 'rotate-secret', [CompletionResultType]::ParameterValue, 'Make a new URL secret (the old URLs stop working)')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop a running proxy (a socket-activated one starts again on the next connection)')
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the proxy detached (it exits when idle, unless --persistent)')
            [CompletionResult]::new('serve', 'serve', [CompletionResultType]::ParameterValue, 'Run the proxy in the foreground: what `exec`, `proxy start` and the service manager run')
            [CompletionResult]::new('lease', 'lease', [CompletionResultType]::ParameterValue, 'Hold a lease on the proxy with credentials read from stdin (for tests and debugging)')
            [CompletionResult]::new('watch-urls', 'watch-urls', [CompletionResultType]::ParameterValue, 'Remove FILE once stdin ends, if proxy PID wrote it (the background proxy''s watcher)')
            break
        }
        'nixstore-auth;help;proxy;status' {
            break
        }
        'nixstore-auth;help;proxy;rotate-secret' {
            break
        }
        'nixstore-auth;help;proxy;stop' {
            break
        }
        'nixstore-auth;help;proxy;start' {
            break
        }
        'nixstore-auth;help;proxy;serve' {
            break
        }
        'nixstore-auth;help;proxy;lease' {
            break
        }
        'nixstore-auth;help;proxy;watch-urls' {
            break
        }
        'nixstore-auth;help;service' {
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Run the proxy in the background and point your nix.conf at it (`!include`)')
            [CompletionResult]::new('uninstall', 'uninstall', [CompletionResultType]::ParameterValue, 'Stop the background proxy and undo what `install` wrote, byte for byte')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Whether the proxy is up and serves every cache it should (exit 0; 1 otherwise; 3 when an administrator must act)')
            break
        }
        'nixstore-auth;help;service;install' {
            break
        }
        'nixstore-auth;help;service;uninstall' {
            break
        }
        'nixstore-auth;help;service;status' {
            break
        }
        'nixstore-auth;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
