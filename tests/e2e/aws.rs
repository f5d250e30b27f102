//! AWS sessions end to end (issue 3): the built binary against moto (S3/STS/IAM with
//! authentication on) and the tests' own STS front (MFA checks, call counts, short expiry),
//! run as root with a fresh HOME in the userland of each Nix under test (the chroot's for 2.34,
//! with Debian sid's python3-boto3 as the AWS tool under `exec`).

use crate::support::*;
use std::fs;
use std::time::{Duration, Instant};

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Test 1: role_arn + source_profile + mfa_serial: exec's child reads the private bucket; the same
/// reader with wrong keys is refused by S3. A source_profile chain works too.
fn role_with_mfa_reads_the_bucket_and_wrong_keys_do_not(e2e: &E2e) {
    let bed = AwsBed::start(e2e);
    let home = bed.home();
    let out = home
        .cmd()
        .args(["exec", "--profile", "work", "--mfa-code", "123456", "--"])
        .args(bed.reader())
        .output()
        .unwrap();
    assert_eq!(ok(&out), bed.body);
    assert_eq!(bed.calls("AssumeRole"), 1);

    let refused = bed.read_with(&home, &bed.key_id, "not-the-secret");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("SignatureDoesNotMatch")
            || text(&refused.stderr).contains("403"),
        "{}",
        text(&refused.stderr)
    );

    // Two hops: keys -> middle (role mid) -> chain (role deploy, with MFA).
    let out = home
        .cmd()
        .args(["exec", "--profile", "chain", "--mfa-code", "234567", "--"])
        .args(bed.reader())
        .output()
        .unwrap();
    assert_eq!(ok(&out), bed.body);
    assert_eq!(bed.calls("AssumeRole"), 3);
}

/// Test 2: A second exec within the session's life makes no STS call and asks for nothing (no
/// terminal, no code); a nested exec of the same profile reuses the outer session even with
/// the cache gone.
fn cached_and_nested_sessions_need_no_sts_and_no_code(e2e: &E2e) {
    let bed = AwsBed::start(e2e);
    let bin = e2e.bin.display();
    let home = bed.home();
    let first = ok(&home.run(&[
        "exec",
        "--profile",
        "work",
        "--mfa-code",
        "123456",
        "--",
        "printenv",
        "AWS_ACCESS_KEY_ID",
    ]));
    assert!(first.starts_with("ASIA"), "{first}");
    let out = home
        .cmd()
        .args(["exec", "--profile", "work", "--"])
        .args(bed.reader())
        .output()
        .unwrap();
    assert_eq!(ok(&out), bed.body);
    assert_eq!(bed.calls("AssumeRole"), 1, "the second exec called STS");

    let nested = format!(
        "{bin} logout --all && {bin} exec --profile work -- printenv AWS_ACCESS_KEY_ID NIXSTORE_AUTH_PROFILE"
    );
    let inner = ok(&home.run(&["exec", "--profile", "work", "--", "sh", "-c", &nested]));
    assert_eq!(inner, format!("{first}work\n"));
    assert_eq!(bed.calls("AssumeRole"), 1);
    assert_eq!(home.cached_sessions(), 0);
}

/// Test 3: A wrong MFA code: clear error, non-zero exit, the command does not run, nothing cached.
/// Test 6: No terminal and no code: the error names --mfa-code.
fn wrong_code_and_no_terminal_fail_clearly(e2e: &E2e) {
    let bed = AwsBed::start(e2e);
    let home = bed.home();
    let marker = home.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let out = home.run(&[
        "exec",
        "--profile",
        "work",
        "--mfa-code",
        "999999",
        "--",
        "sh",
        "-c",
        &touch,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("STS refused the MFA code"), "{err}");
    assert!(err.contains("nothing was cached"), "{err}");
    assert!(!marker.exists());
    assert_eq!(home.cached_sessions(), 0);
    // The code goes to GetSessionToken (the MFA base session), never to AssumeRole.
    assert_eq!(
        bed.calls("GetSessionToken"),
        1,
        "a code from argv is sent once"
    );
    assert_eq!(bed.calls("AssumeRole"), 0);

    let out = home.run(&["exec", "--profile", "work", "--", "sh", "-c", &touch]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("--mfa-code"), "{err}");
    assert!(err.contains("NIXSTORE_AUTH_MFA_CODE"), "{err}");
    assert!(!marker.exists());
    assert_eq!(
        bed.calls("GetSessionToken"),
        1,
        "no STS call without a code"
    );
    assert_eq!(bed.calls("AssumeRole"), 0, "no STS call without a code");

    // The code from the environment works the same as --mfa-code.
    let out = home
        .cmd()
        .env("NIXSTORE_AUTH_MFA_CODE", "345678")
        .args(["exec", "--profile", "work", "--", "sh", "-c", &touch])
        .output()
        .unwrap();
    ok(&out);
    assert!(marker.exists());
}

/// Test 4: An expired cached session is never reused: the next exec asks again. A session inside
/// the refresh margin is refreshed too; outside it, reused.
fn expired_sessions_are_refreshed(e2e: &E2e) {
    let bed = AwsBed::start(e2e);
    let home = bed.home();
    home.set_config("keyring-backend = \"file\"\nsession-refresh-margin = 0\n");
    bed.set_expiry(3);
    ok(&home.run(&[
        "exec",
        "--profile",
        "work",
        "--mfa-code",
        "111111",
        "--",
        "true",
    ]));
    ok(&home.run(&["exec", "--profile", "work", "--", "true"]));
    assert_eq!(bed.calls("AssumeRole"), 1, "reused while valid");
    home.wait_until_cached_sessions_expire();
    let out = home.run(&["exec", "--profile", "work", "--", "true"]);
    assert!(!out.status.success(), "an expired session was reused");
    assert!(text(&out.stderr).contains("--mfa-code"));
    let out = home
        .cmd()
        .args(["exec", "--profile", "work", "--mfa-code", "222222", "--"])
        .args(bed.reader())
        .output()
        .unwrap();
    assert_eq!(ok(&out), bed.body);
    assert_eq!(bed.calls("AssumeRole"), 2);

    // 120 s left: the default margin (300 s) refreshes, a 60 s margin reuses.
    bed.set_expiry(120);
    home.set_config("keyring-backend = \"file\"\n");
    ok(&home.run(&[
        "exec",
        "--profile",
        "work",
        "--mfa-code",
        "333333",
        "--",
        "true",
    ]));
    let out = home.run(&["exec", "--profile", "work", "--", "true"]);
    assert!(!out.status.success(), "reused inside the refresh margin");
    home.set_config("keyring-backend = \"file\"\nsession-refresh-margin = 60\n");
    ok(&home.run(&["exec", "--profile", "work", "--", "true"]));
    assert_eq!(bed.calls("AssumeRole"), 3);

    // login --duration feeds later execs (the cache is not keyed by duration); logout forgets.
    let out = ok(&home.run(&[
        "login",
        "--profile",
        "work",
        "--mfa-code",
        "444444",
        "--duration",
        "900",
    ]));
    assert!(out.contains("assumed-role/deploy"), "{out}");
    assert!(out.contains("123456789012"), "{out}");
    ok(&home.run(&["exec", "--profile", "work", "--", "true"]));
    assert_eq!(bed.calls("AssumeRole"), 4);
    // The role session and the MFA base session it was assumed from.
    let out = home.run(&["logout", "--profile", "work"]);
    assert!(
        text(&out.stderr).contains("Forgot 2 cached sessions"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !home
            .run(&["exec", "--profile", "work", "--", "true"])
            .status
            .success()
    );
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Test 5: The real prompt on a terminal (tmux), with stdin and stdout piped: a wrong code is
/// refused and asked again, a repeated code is caught before STS, the right one runs the
/// command. 8 (part). Ctrl-C on the command gives 130.
fn terminal_prompt_and_ctrl_c(e2e: &E2e) {
    let bed = AwsBed::start(e2e);
    let home = bed.home();
    let bin = e2e.bin.display();
    let ran = home.path().join("ran");
    let rc = home.path().join("rc");
    let script = format!(
        "true | {bin} exec --profile work -- sh -c 'echo \"$NIXSTORE_AUTH_PROFILE\" > {ran}' | cat; \
         echo $? > {rc}; sleep 60",
        ran = ran.display(),
        rc = rc.display()
    );
    let tmux = Tmux::start(e2e, &script, &home.env());
    let screen = || tmux.capture();
    wait_for("the MFA prompt", || screen().contains("MFA code for"));
    assert!(screen().contains(MFA_SERIAL), "{}", screen());
    tmux.send_keys(&["999999", "Enter"]);
    wait_for("the refusal", || screen().contains("try again"));
    tmux.send_keys(&["999999", "Enter"]);
    wait_for("the reuse warning", || screen().contains("already used"));
    // Codes go to GetSessionToken (the MFA base session).
    assert_eq!(
        bed.calls("GetSessionToken"),
        1,
        "a repeated code reached STS"
    );
    tmux.send_keys(&["123456", "Enter"]);
    wait_for("the command", || rc.exists());
    assert_eq!(fs::read_to_string(&rc).unwrap().trim(), "0", "{}", screen());
    assert_eq!(fs::read_to_string(&ran).unwrap().trim(), "work");
    assert_eq!(bed.calls("GetSessionToken"), 2);
    assert_eq!(bed.calls("AssumeRole"), 1);

    // Ctrl-C: exec replaced itself with the command, so the shell sees it die of SIGINT.
    let rc2 = home.path().join("rc2");
    let started = home.path().join("started");
    let script = format!(
        "trap : INT; {bin} exec --profile work -- sh -c 'touch {started}; exec sleep 61'; \
         echo $? > {rc2}; sleep 60",
        started = started.display(),
        rc2 = rc2.display()
    );
    tmux.new_window(&script);
    wait_for("the command to start", || started.exists());
    // Ctrl-C once the command's shell has become `sleep 61` (its own duration: other sleeps run).
    wait_for("the command to be sleep 61", || {
        !processes(|p| p.comm == "sleep" && fs::read(format!("/proc/{}/cmdline", p.pid)).is_ok_and(|c| c == b"sleep\x0061\x00")).is_empty()
    });
    tmux.send_keys(&["C-c"]);
    wait_for("the exit status", || {
        fs::read_to_string(&rc2).is_ok_and(|s| !s.trim().is_empty())
    });
    assert_eq!(fs::read_to_string(&rc2).unwrap().trim(), "130");
}

/// Test 7: `env --format json` as credential_process: boto3 reads the bucket through it.
/// A profile whose credential_process calls us for itself fails instead of recursing.
/// GetSessionToken (mfa_serial without a role) gives working keys.
fn env_json_works_as_credential_process(e2e: &E2e) {
    let bed = AwsBed::start(e2e);
    let bin = e2e.bin.display();
    let home = bed.home();
    let cfg = home.path().join(".aws/config");
    let mut text_cfg = fs::read_to_string(&cfg).unwrap();
    text_cfg.push_str(&format!(
        "\n[profile viaenv]\ncredential_process = {bin} env --format json --profile work\n\
         \n[profile loop]\ncredential_process = {bin} env --format json --profile loop\n"
    ));
    fs::write(&cfg, text_cfg).unwrap();
    ok(&home.run(&["login", "--profile", "work", "--mfa-code", "123456"]));

    let json: serde_json::Value = serde_json::from_str(&ok(&home.run(&[
        "env",
        "--format",
        "json",
        "--profile",
        "work",
    ])))
    .unwrap();
    assert_eq!(json["Version"], 1);
    assert!(json["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert!(json["SessionToken"].is_string() && json["Expiration"].is_string());

    let out = home
        .plain_cmd(e2e.nix.python())
        .arg(&bed.s3get)
        .args([&bed.bucket, &bed.key])
        .env("AWS_PROFILE", "viaenv")
        .output()
        .unwrap();
    assert_eq!(ok(&out), bed.body);
    assert_eq!(bed.calls("AssumeRole"), 1);

    let mut c = home.cmd();
    c.args(["env", "--format", "json", "--profile", "loop"]);
    let start = Instant::now();
    let out = c.output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already being resolved"),
        "{}",
        text(&out.stderr)
    );

    let sh = ok(&home.run(&["env", "--profile", "work"]));
    assert!(sh.contains("export AWS_SESSION_TOKEN='"), "{sh}");
    assert!(sh.contains("unset AWS_PROFILE"));
    let fish = ok(&home.run(&["env", "--profile", "work", "--format", "fish"]));
    assert!(fish.contains("set -gx AWS_ACCESS_KEY_ID 'ASIA"), "{fish}");

    // `work` made its MFA base session with GetSessionToken at login; `gst` has its own.
    let before = bed.calls("GetSessionToken");
    let out = home
        .cmd()
        .args(["exec", "--profile", "gst", "--mfa-code", "555555", "--"])
        .args(bed.reader())
        .output()
        .unwrap();
    assert_eq!(ok(&out), bed.body);
    assert_eq!(bed.calls("GetSessionToken"), before + 1);
}

/// Test 8: No secret in the child's argv, in -v output, or in a file others can read; exit
/// statuses 7, 127, 126; without AWS work exec only runs the command.
fn secrets_stay_private_and_statuses_pass_through(e2e: &E2e) {
    let bed = AwsBed::start(e2e);
    let home = bed.home();
    // No keyring-backend: the fallback is announced once.
    home.set_config("");
    let child = home
        .cmd()
        .args([
            "-vv",
            "exec",
            "--profile",
            "work",
            "--mfa-code",
            "123456",
            "--",
        ])
        .args(["sleep", "30"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let environ = format!("/proc/{pid}/environ");
    let cmdline = format!("/proc/{pid}/cmdline");
    wait_for("the replaced process", || {
        fs::read(&cmdline).is_ok_and(|c| c.starts_with(b"sleep\0"))
    });
    let env = fs::read(&environ).unwrap();
    let var = |name: &str| {
        env.split(|b| *b == 0)
            .find_map(|kv| kv.strip_prefix(format!("{name}=").as_bytes()))
            .map(text)
            .unwrap_or_else(|| panic!("{name} not in the child's environment"))
    };
    let secret = var("AWS_SECRET_ACCESS_KEY");
    let token = var("AWS_SESSION_TOKEN");
    assert_eq!(var("AWS_REGION"), "us-east-1");
    assert!(var("AWS_CREDENTIAL_EXPIRATION").ends_with('Z'));
    let argv = text(&fs::read(&cmdline).unwrap());
    assert!(!argv.contains(&secret) && !argv.contains(&token));
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "sleep died of SIGTERM");
    let err = text(&out.stderr);
    assert!(err.contains("debug:"), "-vv printed nothing: {err}");
    assert!(
        !err.contains(&secret) && !err.contains(&token),
        "a secret in -v output"
    );
    assert_eq!(
        err.matches("no OS keyring is available").count(),
        1,
        "{err}"
    );

    let holders = files_holding(home.path(), &secret, None);
    assert!(!holders.is_empty(), "the session was not cached");
    for (p, mode) in holders {
        assert_eq!(mode & 0o077, 0, "{} is readable by others", p.display());
        let dir = p.parent().unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(dir).unwrap().permissions())
                & 0o077,
            0,
            "{} is open to others",
            dir.display()
        );
    }

    let status = |args: &[&str]| home.run(args).status.code();
    assert_eq!(
        status(&["exec", "--profile", "work", "--", "sh", "-c", "exit 7"]),
        Some(7)
    );
    assert_eq!(
        status(&["exec", "--profile", "work", "--", "/no/such/cmd"]),
        Some(127)
    );
    assert_eq!(
        status(&["exec", "--profile", "work", "--", "/etc"]),
        Some(126)
    );
    // No AWS work: no profile, no cache recorded; the outer environment passes unchanged.
    let out = home
        .cmd()
        .env("AWS_PROFILE", "work")
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            "echo \"$AWS_PROFILE:${AWS_ACCESS_KEY_ID:-none}\"; exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "work:none\n");
    assert_eq!(status(&["exec", "--", "no-such-command-xyz"]), Some(127));
    assert_eq!(bed.calls("AssumeRole"), 1);
}

/// The session cache in a real Secret Service (gnome-keyring under dbus-run-session): the
/// session lands in the keyring (secret-tool finds it) and in no file.
fn session_cache_lives_in_the_keyring(e2e: &E2e) {
    let bed = AwsBed::start(e2e);
    let home = bed.home();
    for tool in ["dbus-run-session", "gnome-keyring-daemon", "secret-tool"] {
        assert!(
            home.plain_cmd("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap()
                .status
                .success(),
            "{tool} is missing: apt-get install gnome-keyring dbus libsecret-tools"
        );
    }
    let bin = e2e.bin.display();
    home.set_config("keyring-backend = \"os\"\n");
    let script = format!(
        "echo test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1 || exit 90
         {bin} exec --profile work --mfa-code 123456 -- printenv AWS_SECRET_ACCESS_KEY || exit 91
         {bin} exec --profile work -- printenv AWS_SECRET_ACCESS_KEY || exit 92
         echo ---
         secret-tool search --all service nixstore-auth 2>&1
         echo ---
         {bin} logout --all >&2 || exit 93
         secret-tool search --all service nixstore-auth 2>&1; true"
    );
    let out = home
        .plain_cmd("dbus-run-session")
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = ok(&out);
    let parts: Vec<&str> = stdout.split("---\n").collect();
    let secrets: Vec<&str> = parts[0].lines().collect();
    assert_eq!(secrets.len(), 2, "{stdout}");
    assert_eq!(
        secrets[0], secrets[1],
        "the second exec did not reuse the session"
    );
    assert_eq!(bed.calls("AssumeRole"), 1);
    assert!(parts[1].contains("username = aws-session:"), "{stdout}");
    assert!(parts[1].contains("service = nixstore-auth"), "{stdout}");
    assert!(
        !parts[2].contains("aws-session:"),
        "logout left it: {stdout}"
    );
    assert!(!text(&out.stderr).contains("no OS keyring"));
    // In no file: not in HOME (keyrings are encrypted there), no file store made.
    assert!(files_holding(home.path(), secrets[0], None).is_empty());
    assert!(!home.secrets_dir().exists());
}

/// doctor on an S3 cache never prompts: without a session it fails and names the command that
/// renews it; after `login` it reports the session's time left and reaches the bucket with a
/// signed GET; once the session expired, it says so again.
fn doctor_reports_s3_sessions_without_prompting(e2e: &E2e) {
    let bed = AwsBed::start(e2e);
    let home = bed.home();
    home.set_config("keyring-backend = \"file\"\nsession-refresh-margin = 0\n");
    let url = format!(
        "s3://{}?region=us-east-1&endpoint={}&profile=work",
        bed.bucket,
        bed.moto_url()
    );
    ok(&home.run(&["use", &url, "--mode", "user", "--name", "bkt"]));
    let checks = |out: &std::process::Output| -> Vec<serde_json::Value> {
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["section"].as_str().unwrap_or("").starts_with("cache bkt"))
            .cloned()
            .collect()
    };
    let needs_login = |cs: &[serde_json::Value]| {
        cs.iter().any(|c| {
            c["status"] == "fail"
                && c["summary"]
                    .as_str()
                    .unwrap()
                    .contains("no valid AWS session")
                && c["fix"].as_str().unwrap_or("") == "nixstore-auth login bkt"
        })
    };

    let out = home.run(&["doctor", "bkt", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let cs = checks(&out);
    assert!(needs_login(&cs), "{cs:#?}");
    assert!(
        cs.iter()
            .any(|c| c["summary"].as_str().unwrap().contains(MFA_SERIAL)),
        "the MFA device is named: {cs:#?}"
    );
    assert_eq!(bed.calls("AssumeRole"), 0, "doctor never asks STS");

    bed.set_expiry(6);
    ok(&home.run(&["login", "bkt", "--mfa-code", "444444"]));
    let out = home.run(&["doctor", "bkt", "--json"]);
    let cs = checks(&out);
    assert!(
        cs.iter().any(|c| c["summary"]
            .as_str()
            .unwrap()
            .starts_with("AWS session from cache")),
        "{cs:#?}"
    );
    assert!(
        cs.iter().any(|c| c["summary"]
            .as_str()
            .unwrap()
            .contains("bucket reachable with the session")),
        "a signed GET reached moto: {cs:#?}"
    );
    assert!(!needs_login(&cs), "{cs:#?}");

    home.wait_until_cached_sessions_expire();
    let out = home.run(&["doctor", "bkt", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        needs_login(&checks(&out)),
        "the expired session is reported"
    );
    assert_eq!(
        bed.calls("AssumeRole"),
        1,
        "doctor never refreshes by itself"
    );
}

crate::proofs!(
    role_with_mfa_reads_the_bucket_and_wrong_keys_do_not,
    cached_and_nested_sessions_need_no_sts_and_no_code,
    wrong_code_and_no_terminal_fail_clearly,
    expired_sessions_are_refreshed,
    terminal_prompt_and_ctrl_c,
    env_json_works_as_credential_process,
    secrets_stay_private_and_statuses_pass_through,
    session_cache_lives_in_the_keyring,
    doctor_reports_s3_sessions_without_prompting,
);
