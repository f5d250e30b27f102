//! Temporary credentials that outlive the command (issue 14), through the real nix-daemon of
//! each Nix under test: moto (S3, IAM, STS with authentication on) behind the tests' STS front
//! (tests/support/py/sts_front.py), which keeps expiry per action (short role sessions, a long
//! MFA base session), gives GetSessionToken keys an MFA context, serves web identity and an SSO
//! portal stand-in, and logs every call. A trusted test user records the bucket as an S3 cache
//! and runs `exec -- sh -c 'nix-store -r P1; ...; nix-store -r P2'`.
//!
//! Sessions here last seconds ([`SHORT`]), and the user's config keeps the default
//! `session-refresh-margin` (300 s): renewal halfway through a short session is part of what is
//! proven. Where a proof claims that a command outlives its first session, the command fetches
//! P2 only once that session has really ended (the front logs each session's end; the command
//! waits for a file the test makes then): the proxy answers 503 for an ended session, so P2
//! substitutes only through a renewed one.

use crate::support::*;
use std::fs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The length of the short sessions the front issues here, in seconds: renewed halfway (the
/// default margin scaled down), so a proof waits about this long for a real expiry.
const SHORT: u64 = 8;

/// Seconds since the epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `exec` running in the background, its output in files.
struct Running {
    child: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the command to end (killed after 180 s) and returns what it did.
    fn finish(mut self) -> Output {
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Output {
            status,
            stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: self.stderr(),
            what: "exec in the background".into(),
        }
    }
}

/// The S3 bed with the STS front, a cache holding two signed paths, and the user's config.
struct Sessions<'a> {
    bed: Bed<'a>,
    front: StsFront,
    /// The role the user may assume (this bed's `cache-reader-TAG` in moto).
    role: String,
    mfa_serial: String,
    p1: SignedCache,
    p2: ExtraPaths,
}

impl<'a> Sessions<'a> {
    fn start(e2e: &'a E2e, tag: &str) -> Sessions<'a> {
        let bed = Bed::new(e2e);
        let aws_config = bed.user.read(".aws/config");
        let role = aws_config
            .lines()
            .find_map(|l| l.strip_prefix("role_arn = "))
            .expect("the bed's role profile")
            .to_string();
        let account = role.split(':').nth(4).unwrap();
        let mfa_serial = format!("arn:aws:iam::{account}:mfa/nix");
        let front = StsFront::start(e2e, &bed.moto.url(), &bed.key_id, &bed.secret, &role);
        let p1 = SignedCache::create(e2e, tag);
        let p2 = ExtraPaths::create(e2e, &format!("{tag}2"), 1, &cache_secret_key(e2e, tag));
        bed.upload(&p1.dir);
        bed.upload(&p2.dir);
        bed.write_user_file(
            ".config/nixstore-auth/config.toml",
            &format!(
                "keyring-backend = \"file\"\n\n[proxy]\nport = {}\n",
                bed.port
            ),
        );
        Sessions {
            bed,
            front,
            role,
            mfa_serial,
            p1,
            p2,
        }
    }

    /// Records the bucket as cache NAME with `profile=` (none: `None`).
    fn use_cache(&self, profile: Option<&str>) {
        let base = self.bed.url.replace(&format!("&profile={PROFILE}"), "");
        let url = match profile {
            Some(p) => format!("{base}&profile={p}"),
            None => base,
        };
        self.bed
            .nsa([
                "use",
                &url,
                "--name",
                NAME,
                "--public-key",
                &self.p1.public_key,
            ])
            .run()
            .assert_success("use s3://");
    }

    /// The role profile `cache` over the keys of `base`, with or without an MFA device.
    fn role_profile(&self, mfa: bool) {
        let mfa = if mfa {
            format!("mfa_serial = {}\n", self.mfa_serial)
        } else {
            String::new()
        };
        self.bed.write_user_file(
            ".aws/config",
            &format!(
                "[profile {PROFILE}]\nrole_arn = {}\nsource_profile = base\n{mfa}region = us-east-1\n\n\
                 [profile base]\nregion = us-east-1\n",
                self.role
            ),
        );
    }

    /// `nixstore-auth ARGS` as the user, STS at the front.
    fn nsa(&self, args: &[&str]) -> UserCmd<'_> {
        self.bed
            .nsa(args)
            .env("AWS_ENDPOINT_URL_STS", self.front.url())
            .timeout(Duration::from_secs(240))
    }

    /// `nix-store -r P1 && MIDDLE && (wait for the go file) && nix-store -r P2`.
    fn script(&self, middle: &str) -> String {
        format!(
            "nix-store -r {} && {middle} && while [ ! -e {go} ]; do sleep 0.1; done && nix-store -r {}",
            self.p1.store_path,
            self.p2.paths[0],
            go = self.go_file().display()
        )
    }

    /// The file that lets [`Sessions::script`] go on to P2.
    fn go_file(&self) -> PathBuf {
        self.bed.user.home.join("go")
    }

    /// Starts `cmd` in the background, its output in files.
    fn spawn(&self, cmd: UserCmd<'_>, tag: &str) -> Running {
        let dir = self.bed.e2e.private_dir(&format!("{tag}-out"));
        let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
        let child = cmd
            .into_command()
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// When the first session the front issued for `action` ends (waits for that call).
    fn first_end(&self, action: &str, running: &mut Running) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let logged = self.front.logged(action);
            if let Some(end) = logged.first().and_then(|e| e["expires"].as_i64()) {
                return end;
            }
            assert!(
                running.child.try_wait().unwrap().is_none() && Instant::now() < deadline,
                "no {action} session was issued: {logged:?}\n{}",
                running.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Lets the command fetch P2 once the session that ends at `end` has ended and `renewed()`
    /// holds (polled); panics if the command ends first.
    fn release_after(&self, end: i64, running: &mut Running, mut renewed: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while unix_now() < end || !renewed() {
            assert!(
                running.child.try_wait().unwrap().is_none(),
                "the command ended before P2:\n{}\n{}",
                running.stderr(),
                self.bed.proxy_log()
            );
            assert!(
                Instant::now() < deadline,
                "no renewal within 120 s:\n{}\n{}",
                running.stderr(),
                self.bed.proxy_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        fs::write(self.go_file(), "").unwrap();
    }

    fn assert_both_substituted(&self, out: &Output) {
        let e2e = self.bed.e2e;
        assert!(self.p1.is_valid(e2e), "P1 not substituted:\n{out}");
        assert_eq!(self.p2.valid(e2e), 1, "P2 not substituted:\n{out}");
    }

    fn assert_no_503(&self) {
        let log = self.bed.proxy_log();
        let answered_503 = log
            .lines()
            .any(|l| l.ends_with(": 503") || l.contains("(503)") || l.contains("answering 503"));
        assert!(!answered_503, "the proxy answered 503:\n{log}");
    }
}

/// Proof 1: long build with long-term keys plus a role, sessions of [`SHORT`] seconds and the
/// default margin: the session is renewed while the command runs, the second path is fetched
/// only after the first session has ended and substitutes, no 503.
fn long_build_renews_a_role_session(e2e: &E2e) {
    let s = Sessions::start(e2e, "long");
    s.role_profile(false);
    s.use_cache(Some(PROFILE));
    s.front
        .configure(serde_json::json!({"expiry_by_action": {"AssumeRole": SHORT}}));
    let mut running = s.spawn(
        s.nsa(&["-v", "exec", "--"])
            .args(["sh", "-c", &s.script("true")]),
        "long",
    );
    let first_end = s.first_end("AssumeRole", &mut running);
    s.release_after(first_end, &mut running, || {
        s.bed.proxy_log().contains("switched to a newer session")
    });
    let out = running.finish();
    out.assert_success("exec -- sh -c 'nix-store -r P1; (first session ends); nix-store -r P2'");
    s.assert_both_substituted(&out);
    let assumed = s.front.logged("AssumeRole");
    assert!(
        assumed.len() >= 2,
        "no refresh reached STS: {assumed:?}\n{out}"
    );
    assert!(
        out.stderr.contains("renewed the AWS session for s3cache"),
        "{out}"
    );
    let log = s.bed.proxy_log();
    assert!(log.contains("switched to a newer session"), "{log}");
    s.assert_no_503();
    s.bed
        .assert_no_secret("exec -v output", &without_nix_progress(&out));
}

/// Proof 2: an MFA role profile and `--mfa-code` given once: one GetSessionToken (the base
/// session, with the code), then AssumeRoles from it without a code (the role refuses one
/// without MFA context) for the first session and every renewal; P2 is fetched after the first
/// role session has ended; both paths substituted.
fn one_mfa_code_opens_a_base_session_for_every_renewal(e2e: &E2e) {
    let s = Sessions::start(e2e, "mfa");
    s.role_profile(true);
    s.use_cache(Some(PROFILE));
    s.front.configure(serde_json::json!({
        "expiry_by_action": {"AssumeRole": SHORT},
        "mfa_roles": [s.role],
    }));
    let mut running = s.spawn(
        s.nsa(&["-v", "exec", "--mfa-code", "123456", "--"])
            .args(["sh", "-c", &s.script("true")]),
        "mfa",
    );
    let first_end = s.first_end("AssumeRole", &mut running);
    s.release_after(first_end, &mut running, || {
        s.front.logged("AssumeRole").len() >= 2
            && s.bed.proxy_log().contains("switched to a newer session")
    });
    let out = running.finish();
    out.assert_success("exec --mfa-code C -- sh -c 'nix-store -r P1; (first session ends); nix-store -r P2'");
    s.assert_both_substituted(&out);
    let gst = s.front.logged("GetSessionToken");
    let assumed = s.front.logged("AssumeRole");
    assert_eq!(gst.len(), 1, "{gst:?}");
    assert!(assumed.len() >= 2, "{assumed:?}");
    let codes: Vec<_> = s
        .front
        .log()
        .into_iter()
        .filter(|e| !e["code"].is_null())
        .collect();
    assert_eq!(codes.len(), 1, "one MFA code was used: {codes:?}");
    assert_eq!(gst[0]["code"], "123456");
    assert_eq!(gst[0]["key"], s.bed.key_id.as_str());
    for a in &assumed {
        assert!(a["code"].is_null(), "{a}");
        assert_ne!(
            a["key"],
            s.bed.key_id.as_str(),
            "assumed with the long-term key"
        );
        assert_eq!(
            a["key"], assumed[0]["key"],
            "every session from the same base session: {assumed:?}"
        );
    }
    s.assert_no_503();

    // doctor names the route and the lengths.
    let out = s.nsa(&["doctor", NAME]).run();
    assert!(out.stdout.contains("MFA base session"), "{out}");
}

/// Proof 3: a refresh that needs a person (the base session ends before the role session):
/// one warning naming `nixstore-auth login s3cache` before the session ends; `login` from a
/// second shell with a new code hands its session to the running proxy, and the command's next
/// path, fetched after the first role session has ended, substitutes at the same URL.
fn a_renewal_that_needs_a_person_warns_once_and_login_hands_over(e2e: &E2e) {
    let s = Sessions::start(e2e, "person");
    s.role_profile(true);
    s.use_cache(Some(PROFILE));
    s.front.configure(serde_json::json!({
        "expiry_by_action": {"AssumeRole": SHORT, "GetSessionToken": SHORT - 2},
        "mfa_roles": [s.role],
    }));
    let mut running = s.spawn(
        s.nsa(&["exec", "--mfa-code", "123456", "--"])
            .args(["sh", "-c", &s.script("true")]),
        "person",
    );
    let first_end = s.first_end("AssumeRole", &mut running);
    wait_until(
        "the warning that a login is needed",
        Duration::from_secs(60),
        || running.stderr().contains("nixstore-auth login s3cache"),
    );
    assert!(unix_now() < first_end, "warned after the session ended");
    let login = s.nsa(&["login", NAME, "--mfa-code", "234567"]).run();
    login.assert_success("login s3cache from a second shell");
    assert!(
        login
            .stderr
            .contains("handed the new session to the running proxy"),
        "{login}"
    );
    s.release_after(first_end, &mut running, || true);
    let out = running.finish();
    let err = &out.stderr;
    assert!(out.success(), "exec failed:\n{out}");
    assert!(s.p1.is_valid(e2e) && s.p2.valid(e2e) == 1, "{err}");
    assert_eq!(
        err.matches("nixstore-auth login s3cache").count(),
        1,
        "one warning: {err}"
    );
    assert_eq!(s.front.logged("GetSessionToken").len(), 2);
    let log = s.bed.proxy_log();
    assert!(
        log.contains("login handed over a session: 1 cache(s)"),
        "{log}"
    );
    s.assert_no_503();
}

/// Proof 4: web identity as CI has it: `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`, no AWS
/// files at all. The front's AssumeRoleWithWebIdentity issues the session; after the token file
/// is replaced, the refresh sends the new token, and P2, fetched after the first session has
/// ended, substitutes with the renewed one.
fn web_identity_without_aws_files_renews_with_the_new_token(e2e: &E2e) {
    let s = Sessions::start(e2e, "wi");
    fs::remove_dir_all(s.bed.user.home.join(".aws")).unwrap();
    s.use_cache(None);
    s.front.configure(serde_json::json!({
        "expiry_by_action": {"AssumeRoleWithWebIdentity": SHORT},
        "web_tokens": ["token-one", "token-two"],
    }));
    s.bed.write_user_file("ci/token", "token-one\n");
    let token = s.bed.user.home.join("ci/token");
    let replace = format!("printf token-two > {}", token.display());
    let mut running = s.spawn(
        s.nsa(&["-v", "exec", "--"])
            .args(["sh", "-c", &s.script(&replace)])
            .env("AWS_ROLE_ARN", &s.role)
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token),
        "wi",
    );
    let first_end = s.first_end("AssumeRoleWithWebIdentity", &mut running);
    s.release_after(first_end, &mut running, || {
        s.front
            .logged("AssumeRoleWithWebIdentity")
            .iter()
            .any(|c| c["token"] == "token-two")
            && s.bed.proxy_log().contains("switched to a newer session")
    });
    let out = running.finish();
    out.assert_success("exec with web identity");
    s.assert_both_substituted(&out);
    assert!(!s.bed.user.home.join(".aws").exists());
    let calls = s.front.logged("AssumeRoleWithWebIdentity");
    assert!(calls.len() >= 2, "{calls:?}");
    assert_eq!(calls[0]["token"], "token-one");
    assert_eq!(calls.last().unwrap()["token"], "token-two", "{calls:?}");
    assert_eq!(calls[0]["role"], s.role.as_str());
    s.assert_no_503();
}

/// Proof 5: only `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN` in the
/// environment (what aws-actions/configure-aws-credentials leaves), no AWS files: the daemon
/// substitutes, and nothing calls STS.
fn environment_credentials_alone_substitute(e2e: &E2e) {
    let s = Sessions::start(e2e, "envonly");
    fs::remove_dir_all(s.bed.user.home.join(".aws")).unwrap();
    s.use_cache(None);
    let c = s.front.mint(3600);
    let v = |k: &str| c[k].as_str().unwrap().to_string();
    let out = s
        .nsa(&["exec", "--"])
        .args(["nix-store", "-r", &s.p1.store_path])
        .env("AWS_ACCESS_KEY_ID", v("AccessKeyId"))
        .env("AWS_SECRET_ACCESS_KEY", v("SecretAccessKey"))
        .env("AWS_SESSION_TOKEN", v("SessionToken"))
        .env("AWS_REGION", "us-east-1")
        .run();
    out.assert_success("exec with environment credentials");
    assert!(s.p1.is_valid(e2e), "{out}");
    assert!(s.front.log().is_empty(), "{:?}", s.front.log());
    out.assert_hides(&[&v("SecretAccessKey"), &v("SessionToken")]);
}

/// Proof 6: SSO with the token `aws sso login` cached: GetRoleCredentials at the portal
/// stand-in (aws-config's SSO client pointed at it with AWS_ENDPOINT_URL_SSO) gives the
/// session, `exec` substitutes; with the cached token expired, the error names
/// `aws sso login --profile sso`.
fn sso_with_a_cached_token_and_a_clear_error_when_it_expired(e2e: &E2e) {
    let s = Sessions::start(e2e, "sso");
    let start_url = "https://nixstore-auth-e2e.awsapps.com/start";
    let account = s.role.split(':').nth(4).unwrap().to_string();
    s.bed.write_user_file(
        ".aws/config",
        &format!(
            "[profile sso]\nsso_start_url = {start_url}\nsso_region = us-east-1\n\
             sso_account_id = {account}\nsso_role_name = reader\nregion = us-east-1\n"
        ),
    );
    let sha = run_root(
        "sh",
        ["-c", &format!("printf %s '{start_url}' | sha1sum")],
        None,
    );
    let name = sha.stdout.split_whitespace().next().unwrap().to_string();
    let token_file = |expires: &str| {
        s.bed.write_user_file(
            &format!(".aws/sso/cache/{name}.json"),
            &serde_json::json!({
                "startUrl": start_url,
                "region": "us-east-1",
                "accessToken": "sso-access-token",
                "expiresAt": expires,
            })
            .to_string(),
        )
    };
    token_file("2099-01-01T00:00:00Z");
    s.front
        .configure(serde_json::json!({"sso_tokens": ["sso-access-token"]}));
    s.use_cache(Some("sso"));
    let out = s
        .nsa(&["exec", "--"])
        .args(["nix-store", "-r", &s.p1.store_path])
        .env("AWS_ENDPOINT_URL_SSO", s.front.url())
        .run();
    out.assert_success("exec with an SSO profile");
    assert!(s.p1.is_valid(e2e), "{out}");
    let calls = s.front.logged("GetRoleCredentials");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["token"], "sso-access-token");

    // Expired: in the cache file, and the portal refuses it (as AWS's does).
    token_file("2001-01-01T00:00:00Z");
    s.front.configure(serde_json::json!({"sso_tokens": []}));
    let out = s
        .nsa(&["exec", "--"])
        .args(["nix-store", "-r", &s.p2.paths[0]])
        .env("AWS_ENDPOINT_URL_SSO", s.front.url())
        .run();
    out.assert_failure("exec with an expired SSO token");
    assert!(out.stderr.contains("aws sso login --profile sso"), "{out}");
    assert_eq!(s.p2.valid(e2e), 0);
}

/// Proof 7: a `credential_process` profile: `exec` substitutes two paths (many requests) and
/// the process ran once for the session, not per request.
fn credential_process_runs_once_per_session(e2e: &E2e) {
    let s = Sessions::start(e2e, "proc");
    let mut c = s.front.mint(3600);
    c["Version"] = 1.into();
    s.bed.write_user_file("creds.json", &c.to_string());
    let home = s.bed.user.home.clone();
    let script = format!(
        "#!/bin/sh\necho call >> {h}/creds-calls\ncat {h}/creds.json\n",
        h = home.display()
    );
    s.bed.write_user_file("creds.sh", &script);
    fs::set_permissions(
        home.join("creds.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    s.bed.write_user_file(
        ".aws/config",
        &format!(
            "[profile proc]\ncredential_process = {}/creds.sh\nregion = us-east-1\n",
            home.display()
        ),
    );
    s.use_cache(Some("proc"));
    let both = format!(
        "nix-store -r {} && nix-store -r {}",
        s.p1.store_path, s.p2.paths[0]
    );
    let out = s.nsa(&["exec", "--"]).args(["sh", "-c", &both]).run();
    out.assert_success("exec with a credential_process profile");
    s.assert_both_substituted(&out);
    let calls = fs::read_to_string(home.join("creds-calls")).unwrap_or_default();
    assert_eq!(
        calls.lines().count(),
        1,
        "credential_process calls: {calls:?}"
    );
    assert!(s.front.log().is_empty());
}

crate::proofs!(
    long_build_renews_a_role_session,
    one_mfa_code_opens_a_base_session_for_every_renewal,
    a_renewal_that_needs_a_person_warns_once_and_login_hands_over,
    web_identity_without_aws_files_renews_with_the_new_token,
    environment_credentials_alone_substitute,
    sso_with_a_cached_token_and_a_clear_error_when_it_expired,
    credential_process_runs_once_per_session,
);

