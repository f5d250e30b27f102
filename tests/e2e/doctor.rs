//! `nixstore-auth doctor` reports the real state of a machine (issue 6): the multi-user daemon
//! of each Nix under test, real users, nginx with Basic auth over TLS, signed caches. Where it
//! is cheap, the proof first shows with real Nix that the state is what doctor should report
//! (the healthy cache substitutes, the one with a wrong token does not, ...). Trust comes from
//! different places: Nix 2.8 has no trust line in `nix store ping`, so doctor reads
//! `trusted-users`; 2.34 answers `Trusted: 0/1` in `nix store info`, which doctor asks.
//!
//! Not covered here: an expired AWS session (the AWS proofs cover it with their STS front).

use crate::support::*;
use serde::Deserialize;

/// One line of `doctor --json`.
#[derive(Debug, Deserialize)]
struct Check {
    section: String,
    status: String,
    summary: String,
    fix: Option<String>,
}

/// A signed cache behind nginx with Basic auth (`LOGIN`/`token`) over TLS.
fn serve(e2e: &E2e, tag: &str, tls: &Tls, token: &str) -> (SignedCache, Nginx) {
    let cache = SignedCache::create(e2e, tag);
    let nginx = Nginx::start(
        e2e,
        NginxOptions::new(&cache.dir)
            .basic_auth(LOGIN, token)
            .tls(tls),
    );
    (cache, nginx)
}

fn nix_conf(tls: &Tls, trusted: &[&TestUser]) -> NixConf {
    let mut conf = NixConf::new().ca_bundle(&tls.bundle);
    for user in trusted {
        conf = conf.trusted_user(&user.name);
    }
    conf
}

/// `use URL --name NAME --public-key KEY` with `token` on stdin (`None`: `--no-token`).
fn use_cache(e2e: &E2e, user: &TestUser, url: &str, name: &str, key: &str, token: Option<&str>) {
    let cmd = user.cmd(&e2e.bin).args([
        "use",
        url,
        "--name",
        name,
        "--public-key",
        key,
        "--login",
        LOGIN,
    ]);
    let out = match token {
        Some(t) => cmd.arg("--token-stdin").stdin(format!("{t}\n")).run(),
        None => cmd.arg("--no-token").run(),
    };
    out.assert_success(&format!("use {url}"));
}

/// `doctor ARGS` as `user`, with the CA bundle a user of this machine's Nix has in its
/// environment (Nix reads `NIX_SSL_CERT_FILE`; so must doctor).
fn doctor(e2e: &E2e, user: &TestUser, tls: &Tls, args: &[&str]) -> Output {
    user.cmd(&e2e.bin)
        .arg("doctor")
        .args(args)
        .env("NIX_SSL_CERT_FILE", &tls.bundle)
        .run()
}

fn doctor_json(e2e: &E2e, user: &TestUser, tls: &Tls, args: &[&str]) -> (Output, Vec<Check>) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = doctor(e2e, user, tls, &all);
    let checks = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json printed no JSON list of checks ({e}):\n{out}"));
    (out, checks)
}

/// The checks of the cache at `url` (its section is `cache NAME (URL)`).
fn cache_checks<'a>(checks: &'a [Check], url: &str) -> Vec<&'a Check> {
    let tail = format!("({url})");
    checks
        .iter()
        .filter(|c| c.section.starts_with("cache ") && c.section.ends_with(&tail))
        .collect()
}

/// The one check of `checks` whose summary contains `needle`; panics with all of them otherwise.
#[track_caller]
fn find<'a>(checks: &[&'a Check], needle: &str, all: &Output) -> &'a Check {
    let found: Vec<&&Check> = checks
        .iter()
        .filter(|c| c.summary.contains(needle))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one check mentioning {needle:?} among {checks:#?}\n{all}"
    );
    found[0]
}

#[track_caller]
fn assert_status(check: &Check, status: &str, all: &Output) {
    assert_eq!(check.status, status, "{check:#?}\n{all}");
}

/// A trusted user with three recorded caches: a healthy one, one whose token the cache refuses,
/// and one on a closed port. Real Nix first shows which ones work; then `doctor --json`, the
/// plain report, and `doctor CACHE` for the healthy one alone (exit 0).
fn doctor_reports_healthy_refused_and_unreachable_caches(e2e: &E2e) {
    let user = TestUser::create(e2e, "doc");
    let tls = Tls::create(e2e);
    let (good_token, bad_token, served_token) = (new_token(), new_token(), new_token());
    let (good, good_nginx) = serve(e2e, "doc-good", &tls, &good_token);
    let (bad, bad_nginx) = serve(e2e, "doc-bad", &tls, &served_token);
    let _daemon = NixDaemon::start(e2e, &nix_conf(&tls, &[&user]));
    // Different hosts, so that each cache has its own netrc `machine`.
    let good_url = good_nginx.url_for_host("127.0.0.1");
    let bad_url = bad_nginx.url_for_host("localhost");
    let down_url = format!("http://127.0.0.1:{}", free_port());

    use_cache(
        e2e,
        &user,
        &good_url,
        "good",
        &good.public_key,
        Some(&good_token),
    );
    use_cache(
        e2e,
        &user,
        &bad_url,
        "bad",
        &bad.public_key,
        Some(&bad_token),
    );
    // What doctor must report, as real Nix sees it through the daemon.
    user.cmd("nix-store")
        .args(["-r", &good.store_path])
        .run()
        .assert_success("substitute from the healthy cache");
    user.cmd("nix-store")
        .args(["-r", &bad.store_path])
        .run()
        .assert_failure("substitute from the cache that refuses the token");
    assert!(
        bad_nginx
            .access_log()
            .iter()
            .any(|e| e.user == LOGIN && e.status == 401),
        "nginx never refused the wrong token: {:#?}",
        bad_nginx.access_log()
    );
    // Recorded last: Nix would retry the closed port on every lookup above.
    use_cache(e2e, &user, &down_url, "down", &bad.public_key, None);

    let secrets = [good_token.as_str(), bad_token.as_str()];
    let (out, checks) = doctor_json(e2e, &user, &tls, &[]);
    out.assert_code(1, "doctor --json with a broken cache");
    out.assert_hides(&secrets);

    let nix: Vec<&Check> = checks.iter().filter(|c| c.section == "nix").collect();
    // The version of the Nix under test, as `nix --version` prints it.
    let version = format!("Nix {}", e2e.nix.version());
    assert_status(find(&nix, &version, &out), "info", &out);
    assert!(
        find(&nix, &version, &out).summary.contains("multi-user"),
        "{out}"
    );
    assert_status(find(&nix, "trusts", &out), "ok", &out);

    let good_checks = cache_checks(&checks, &good_url);
    assert_status(find(&good_checks, "public key present", &out), "ok", &out);
    assert_status(find(&good_checks, "substituter visible", &out), "ok", &out);
    let reach = find(&good_checks, "reachable", &out);
    assert_status(reach, "ok", &out);
    assert!(reach.summary.contains("authenticated"), "{reach:#?}");
    assert!(
        good_checks.iter().all(|c| c.status != "fail"),
        "the healthy cache got a failure: {good_checks:#?}"
    );
    assert!(
        good_nginx
            .access_log()
            .iter()
            .any(|e| e.uri == "/nix-cache-info" && e.user == LOGIN && e.status == 200),
        "doctor did not GET nix-cache-info with the login: {:#?}",
        good_nginx.access_log()
    );

    let bad_checks = cache_checks(&checks, &bad_url);
    let refused = find(&bad_checks, "refused the credential", &out);
    assert_status(refused, "fail", &out);
    assert!(
        refused.summary.contains("401"),
        "the status is not named: {refused:#?}"
    );
    assert!(
        refused
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("nixstore-auth use bad --token-stdin")),
        "no fix given: {refused:#?}"
    );
    assert!(
        !bad_checks
            .iter()
            .any(|c| c.summary.contains("reachable") && c.status == "ok"),
        "{bad_checks:#?}"
    );

    let down_checks = cache_checks(&checks, &down_url);
    let down = find(&down_checks, "unreachable", &out);
    assert_status(down, "fail", &out);
    assert!(down.fix.is_some(), "no fix given: {down:#?}");
    assert_eq!(
        checks.iter().filter(|c| c.status == "fail").count(),
        2,
        "exactly the refused and the unreachable cache should fail: {checks:#?}"
    );

    // The plain report says the same to a person (no colour: stdout is not a terminal).
    let plain = doctor(e2e, &user, &tls, &[]);
    plain.assert_code(1, "doctor");
    plain.assert_hides(&secrets);
    let text = &plain.stdout;
    assert!(
        !text.contains('\x1b'),
        "colour codes off a terminal:\n{plain}"
    );
    for needle in [
        &format!("cache good ({good_url})"),
        "refused the credential",
        "unreachable",
        "fix: store a valid token: nixstore-auth use bad --token-stdin",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{plain}");
    }
    assert_eq!(
        text.lines()
            .filter(|l| l.trim_start().starts_with("FAIL"))
            .count(),
        2,
        "{plain}"
    );

    // Only the healthy cache: nothing broken, exit 0.
    let (out, checks) = doctor_json(e2e, &user, &tls, &["good"]);
    out.assert_success("doctor good");
    assert!(cache_checks(&checks, &bad_url).is_empty(), "{checks:#?}");
    assert!(!cache_checks(&checks, &good_url).is_empty(), "{checks:#?}");
}

/// The daemon stops trusting a user whose nix.conf lists a cache: real Nix ignores the
/// substituter, and doctor warns about trust and fails the cache with the fix.
fn doctor_untrusted_user_substituter_ignored(e2e: &E2e) {
    let user = TestUser::create(e2e, "doc");
    let tls = Tls::create(e2e);
    let token = new_token();
    let (cache, nginx) = serve(e2e, "doc-untrusted", &tls, &token);
    let mut daemon = NixDaemon::start(e2e, &nix_conf(&tls, &[&user]));
    let url = nginx.url();
    use_cache(e2e, &user, &url, "corp", &cache.public_key, Some(&token));
    let (out, _) = doctor_json(e2e, &user, &tls, &[]);
    out.assert_success("doctor while trusted");

    daemon.reconfigure(&nix_conf(&tls, &[]));
    let sub = user.cmd("nix-store").args(["-r", &cache.store_path]).run();
    sub.assert_failure("substitute as an untrusted user");
    assert!(
        sub.stderr.contains("ignoring untrusted substituter"),
        "Nix did not say why:\n{sub}"
    );

    let (out, checks) = doctor_json(e2e, &user, &tls, &[]);
    out.assert_code(1, "doctor as an untrusted user");
    out.assert_hides(&[&token]);
    let nix: Vec<&Check> = checks.iter().filter(|c| c.section == "nix").collect();
    let trust = find(&nix, "does not trust", &out);
    assert_status(trust, "warn", &out);
    assert!(
        trust
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("/etc/nix/nix.conf")),
        "{trust:#?}"
    );
    let corp = cache_checks(&checks, &url);
    let key = find(&corp, "public key only in your nix.conf", &out);
    assert_status(key, "fail", &out);
    let ignored = find(&corp, "substituter is in your nix.conf", &out);
    assert_status(ignored, "fail", &out);
    assert!(
        ignored
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("nixstore-auth use corp --mode print")),
        "{ignored:#?}"
    );
}

/// The trap: a cache the administrator set up with its token in `/etc/nix/netrc` works for a
/// trusted user until their own nix.conf sets `netrc-file` (as `use` does for another cache);
/// from then on their commands no longer authenticate to it. doctor warns only while both
/// files are in play.
fn doctor_user_netrc_hides_system_netrc(e2e: &E2e) {
    let user = TestUser::create(e2e, "doc");
    let tls = Tls::create(e2e);
    let (sys_token, own_token) = (new_token(), new_token());
    let (sys_cache, sys_nginx) = serve(e2e, "doc-system", &tls, &sys_token);
    let (own_cache, own_nginx) = serve(e2e, "doc-own", &tls, &own_token);
    let sys_url = sys_nginx.url_for_host("localhost");
    let own_url = own_nginx.url_for_host("127.0.0.1");
    let conf = nix_conf(&tls, &[&user]).extra(&format!(
        "extra-substituters = {sys_url}\nextra-trusted-public-keys = {}\n",
        sys_cache.public_key
    ));
    let daemon = NixDaemon::start(e2e, &conf);
    daemon.write_netrc(&format!(
        "machine localhost login {LOGIN} password {sys_token}\n"
    ));
    user.cmd("nix-store")
        .args(["-r", &sys_cache.store_path])
        .run()
        .assert_success("substitute with the administrator's /etc/nix/netrc");
    sys_cache.delete_local(e2e);

    // `use` names this very trap and asks for --yes before writing netrc-file.
    user.cmd(&e2e.bin)
        .args([
            "use",
            &own_url,
            "--name",
            "own",
            "--public-key",
            &own_cache.public_key,
        ])
        .args(["--login", LOGIN, "--token-stdin", "--yes"])
        .stdin(format!("{own_token}\n"))
        .run()
        .assert_success("use --yes despite /etc/nix/netrc");
    let user_conf = user.read(".config/nix/nix.conf");
    assert!(user_conf.contains("netrc-file"), "{user_conf}");
    let served = sys_nginx.access_log().len();
    user.cmd("nix-store")
        .args(["-r", &sys_cache.store_path])
        .run()
        .assert_failure("substitute once the user's netrc-file hides /etc/nix/netrc");
    assert!(
        sys_nginx.access_log()[served..]
            .iter()
            .all(|e| e.status != 200 || e.uri == "/nix-cache-info"),
        "the system cache still served files: {:#?}",
        sys_nginx.access_log()
    );

    let (out, checks) = doctor_json(e2e, &user, &tls, &[]);
    out.assert_hides(&[&sys_token, &own_token]);
    let traps: Vec<&Check> = checks.iter().filter(|c| c.section == "traps").collect();
    let trap = find(&traps, "hides /etc/nix/netrc", &out);
    assert_status(trap, "warn", &out);
    assert!(trap.summary.contains("netrc-file = "), "{trap:#?}");
    assert!(
        trap.fix
            .as_deref()
            .is_some_and(|f| f.contains("/etc/nix/netrc")),
        "{trap:#?}"
    );
    // A warning is not a failure: the recorded cache itself is healthy.
    out.assert_success("doctor with the netrc trap");

    // Without /etc/nix/netrc nothing is hidden: no warning.
    daemon.remove_netrc();
    let (out, checks) = doctor_json(e2e, &user, &tls, &[]);
    out.assert_success("doctor without /etc/nix/netrc");
    assert!(
        // (The test's directory, in paths, has "hides" in its name.)
        !checks
            .iter()
            .any(|c| c.summary.contains("hides /etc/nix/netrc")),
        "{checks:#?}"
    );
}

/// An untrusted user on a machine whose administrator set the cache up (trusted substituter,
/// key, token in `/etc/nix/netrc`): substitution works, so doctor must not call the cache
/// broken. It cannot read the daemon's netrc, so it says it could not check the login.
fn doctor_untrusted_user_with_administrator_setup(e2e: &E2e) {
    let user = TestUser::create(e2e, "doc");
    let tls = Tls::create(e2e);
    let token = new_token();
    let (cache, nginx) = serve(e2e, "doc-admin", &tls, &token);
    let url = nginx.url();
    let conf = nix_conf(&tls, &[]).extra(&format!(
        "extra-trusted-substituters = {url}\nextra-trusted-public-keys = {}\n",
        cache.public_key
    ));
    let daemon = NixDaemon::start(e2e, &conf);
    daemon.write_netrc(&format!(
        "machine 127.0.0.1 login {LOGIN} password {token}\n"
    ));
    use_cache(e2e, &user, &url, "corp", &cache.public_key, None);
    user.cmd("nix-store")
        .args(["-r", &cache.store_path])
        .run()
        .assert_success("substitute as an untrusted user through the administrator's setup");

    let (out, checks) = doctor_json(e2e, &user, &tls, &[]);
    out.assert_success("doctor: nothing is broken");
    let nix: Vec<&Check> = checks.iter().filter(|c| c.section == "nix").collect();
    assert_status(find(&nix, "does not trust", &out), "warn", &out);
    let mine = cache_checks(&checks, &url);
    assert_status(find(&mine, "public key present", &out), "ok", &out);
    assert_status(find(&mine, "substituter visible", &out), "ok", &out);
    let login = find(&mine, "/etc/nix/netrc", &out);
    assert_status(login, "warn", &out);
    assert!(login.summary.contains("401"), "{login:#?}");
}

crate::proofs!(
    doctor_reports_healthy_refused_and_unreachable_caches,
    doctor_untrusted_user_substituter_ignored,
    doctor_user_netrc_hides_system_netrc,
    doctor_untrusted_user_with_administrator_setup,
);
