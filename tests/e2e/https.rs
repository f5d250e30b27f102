//! `nixstore-auth use`/`remove` make a private HTTPS cache work through the real multi-user
//! nix-daemon of each Nix under test (issue 2, "Proof with real parts"): real users in
//! `nix-users`, nginx with Basic auth over TLS (CA made here) and plain HTTP, a cache signed
//! with a fresh key.

use crate::support::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A signed cache behind nginx with Basic auth (`LOGIN`/`token`), over TLS when `tls` is given.
fn serve(e2e: &E2e, tag: &str, tls: Option<&Tls>, token: &str) -> (SignedCache, Nginx) {
    let cache = SignedCache::create(e2e, tag);
    let mut opts = NginxOptions::new(&cache.dir).basic_auth(LOGIN, token);
    if let Some(tls) = tls {
        opts = opts.tls(tls);
    }
    let nginx = Nginx::start(e2e, opts);
    (cache, nginx)
}

/// The daemon's configuration: `trusted` users, and our CA for the TLS tests.
fn nix_conf(tls: Option<&Tls>, trusted: &[&TestUser]) -> NixConf {
    let mut conf = NixConf::new();
    for user in trusted {
        conf = conf.trusted_user(&user.name);
    }
    if let Some(tls) = tls {
        conf = conf.ca_bundle(&tls.bundle);
    }
    conf
}

/// `nixstore-auth use URL --public-key KEY --token-stdin --login LOGIN`, as `user`.
fn use_cache(e2e: &E2e, user: &TestUser, url: &str, key: &str, token: &str) -> Output {
    user.cmd(&e2e.bin)
        .args([
            "use",
            url,
            "--public-key",
            key,
            "--token-stdin",
            "--login",
            LOGIN,
        ])
        .stdin(format!("{token}\n"))
        .run()
}

/// Plain `nix-store -r PATH` through the daemon, as `user`.
fn substitute(user: &TestUser, cache: &SignedCache) -> Output {
    user.cmd("nix-store").args(["-r", &cache.store_path]).run()
}

/// Files below `user`'s HOME whose contents hold `needle`.
fn files_containing(user: &TestUser, needle: &str) -> Vec<(PathBuf, u32)> {
    files_holding(&user.home, needle, None)
}

/// The test bed itself, without nixstore-auth: a trusted user substitutes over TLS with explicit
/// `--option`s (proves users, daemon, nginx, TLS and the signed cache work), fails without the
/// netrc (proves Basic auth is enforced), and fails without our CA (proves TLS is verified).
fn testbed_substitutes_with_explicit_options(e2e: &E2e) {
    let user = TestUser::create(e2e, "bed");
    let tls = Tls::create(e2e);
    let token = new_token();
    let (cache, nginx) = serve(e2e, "bed", Some(&tls), &token);
    let mut daemon = NixDaemon::start(e2e, &nix_conf(Some(&tls), &[&user]));

    let netrc = e2e.private_dir("bed-netrc").join("netrc");
    std::fs::write(
        &netrc,
        format!("machine 127.0.0.1 login {LOGIN} password {token}\n"),
    )
    .unwrap();
    let explicit = |with_netrc: bool| {
        let mut cmd = user.cmd("nix-store").args([
            "-r",
            &cache.store_path,
            "--option",
            "substituters",
            &nginx.url(),
            "--option",
            "trusted-public-keys",
            &cache.public_key,
        ]);
        if with_netrc {
            cmd = cmd.args(["--option", "netrc-file", netrc.to_str().unwrap()]);
        }
        cmd.run()
    };

    explicit(true).assert_success("substitute with explicit options");
    assert!(cache.is_valid(e2e));
    assert_authenticated_fetch(&nginx, &cache, 0);

    cache.delete_local(e2e);
    let out = explicit(false);
    out.assert_failure("substitute without the netrc");
    assert!(
        nginx
            .access_log()
            .iter()
            .any(|e| e.user.is_empty() && e.status == 401),
        "nginx never answered 401 to an anonymous request: {:#?}",
        nginx.access_log()
    );

    daemon.reconfigure(&nix_conf(None, &[&user]));
    let served = nginx.access_log().len();
    explicit(true).assert_failure("substitute over TLS without trusting our CA");
    assert!(!cache.is_valid(e2e));
    assert!(
        nginx.access_log()[served..].iter().all(|e| e.status != 200),
        "nginx served a file although the daemon should not trust its certificate"
    );
}

/// Steps 1-4 for a trusted user: `use`, plain `nix-store -r` through the daemon (authenticated,
/// per nginx's log), `remove`, and substitution fails again.
fn trusted_flow(e2e: &E2e, tls: bool) {
    let user = TestUser::create(e2e, "trust");
    let tls = tls.then(|| Tls::create(e2e));
    let token = new_token();
    let (cache, nginx) = serve(e2e, "trusted", tls.as_ref(), &token);
    let _daemon = NixDaemon::start(e2e, &nix_conf(tls.as_ref(), &[&user]));
    let url = nginx.url();

    let out = use_cache(e2e, &user, &url, &cache.public_key, &token);
    out.assert_success("use as a trusted user");
    out.assert_hides(&[&token]);
    let conf = user.read(".config/nix/nix.conf");
    assert_eq!(
        setting(&conf, "extra-substituters"),
        vec![url.clone()],
        "nix.conf:\n{conf}"
    );
    assert_eq!(
        setting(&conf, "extra-trusted-public-keys"),
        vec![cache.public_key.clone()],
        "nix.conf:\n{conf}"
    );
    assert!(
        setting(&conf, "substituters").is_empty(),
        "plain `substituters` written:\n{conf}"
    );
    let holders = files_containing(&user, &token);
    assert!(
        !holders.is_empty(),
        "use wrote the token nowhere under HOME"
    );
    for (path, mode) in &holders {
        assert_eq!(
            mode & 0o077,
            0,
            "{} holds the token with mode {mode:o}",
            path.display()
        );
    }
    let netrc_files = setting(&conf, "netrc-file");
    assert_eq!(netrc_files.len(), 1, "nix.conf:\n{conf}");
    let netrc = std::fs::read_to_string(&netrc_files[0]).unwrap();
    assert!(
        netrc.contains(&format!("login {LOGIN}")) && netrc.contains(&token),
        "netrc-file {} lacks the entry",
        netrc_files[0]
    );

    substitute(&user, &cache).assert_success("plain nix-store -r after use");
    assert!(cache.is_valid(e2e));
    assert_authenticated_fetch(&nginx, &cache, 0);

    let out = user.cmd(&e2e.bin).args(["remove", &url]).run();
    out.assert_success("remove");
    let conf = user.read(".config/nix/nix.conf");
    assert!(
        !conf.contains(&url),
        "remove left the URL in nix.conf:\n{conf}"
    );
    assert!(
        !conf.contains(&cache.public_key),
        "remove left the key in nix.conf:\n{conf}"
    );
    let netrc = std::fs::read_to_string(&netrc_files[0]).unwrap_or_default();
    assert!(
        !netrc.contains(&token),
        "remove left the token in the netrc"
    );

    cache.delete_local(e2e);
    let served = nginx.access_log().len();
    substitute(&user, &cache).assert_failure("nix-store -r after remove");
    assert!(!cache.is_valid(e2e));
    assert!(
        nginx.access_log()[served..].iter().all(|e| e.status != 200),
        "nginx still served files after remove"
    );
}

fn use_trusted_user_https(e2e: &E2e) {
    trusted_flow(e2e, true);
}

fn use_trusted_user_plain_http(e2e: &E2e) {
    trusted_flow(e2e, false);
}

/// Step 5: an untrusted user's `use` exits 3 with the administrator's snippet and writes nothing;
/// once root applied the snippet (trusted substituter + key in /etc/nix/nix.conf, the token in
/// the daemon's netrc, daemon restarted) the same `use` succeeds, writes only
/// `extra-substituters`, and plain substitution works.
fn use_untrusted_user_needs_administrator(e2e: &E2e) {
    let user = TestUser::create(e2e, "untr");
    let tls = Tls::create(e2e);
    let token = new_token();
    let (cache, nginx) = serve(e2e, "untrusted", Some(&tls), &token);
    let mut daemon = NixDaemon::start(e2e, &nix_conf(Some(&tls), &[]));
    let url = nginx.url();

    let before = snapshot(&user.home);
    let out = use_cache(e2e, &user, &url, &cache.public_key, &token);
    out.assert_code(3, "use as an untrusted user");
    out.assert_hides(&[&token]);
    let diff = snapshot_diff(&before, &snapshot(&user.home));
    assert!(
        diff.is_empty(),
        "use by an untrusted user changed HOME:\n{diff}"
    );

    // Apply what the snippet says, line by line as printed.
    let text = out.all();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let find = |name: &str| {
        lines
            .iter()
            .copied()
            .find(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == name))
            .unwrap_or_else(|| {
                panic!("the administrator snippet has no `{name} = ...` line:\n{out}")
            })
    };
    let substituters = find("extra-trusted-substituters");
    let keys = find("extra-trusted-public-keys");
    assert_eq!(
        setting(substituters, "extra-trusted-substituters"),
        vec![url.clone()]
    );
    assert_eq!(
        setting(keys, "extra-trusted-public-keys"),
        vec![cache.public_key.clone()]
    );
    assert!(
        text.contains("/etc/nix/netrc"),
        "the snippet does not name the daemon's netrc:\n{out}"
    );
    assert!(
        text.contains("trusted-users"),
        "the snippet does not mention trusted-users:\n{out}"
    );
    // The netrc line as printed (with a placeholder, never the token), the token filled in.
    let machine = lines
        .iter()
        .map(|l| l.trim_start_matches('#').trim())
        .find(|l| l.starts_with("machine "))
        .unwrap_or_else(|| panic!("the administrator snippet has no netrc `machine` line:\n{out}"));
    let words: Vec<&str> = machine.split_whitespace().collect();
    assert!(
        words.len() == 6 && words[1] == "127.0.0.1" && words[3] == LOGIN && words[4] == "password",
        "unexpected netrc line in the snippet: {machine:?}"
    );
    daemon.append_conf(&format!("{substituters}\n{keys}\n"));
    daemon.write_netrc(&format!("{} {token}\n", words[..5].join(" ")));
    daemon.restart();

    let out = use_cache(e2e, &user, &url, &cache.public_key, &token);
    out.assert_success("use after the administrator trusted the cache");
    out.assert_hides(&[&token]);
    let conf = user.read(".config/nix/nix.conf");
    let settings: BTreeMap<&str, Vec<String>> = conf
        .lines()
        .filter_map(|l| l.split('#').next().unwrap().split_once('='))
        .map(|(k, _)| (k.trim(), setting(&conf, k.trim())))
        .collect();
    assert_eq!(
        settings,
        BTreeMap::from([("extra-substituters", vec![url.clone()])]),
        "the user's nix.conf should hold only extra-substituters:\n{conf}"
    );
    assert!(
        files_containing(&user, &token).is_empty(),
        "the token was written under the untrusted user's HOME (the daemon ignores it there)"
    );

    substitute(&user, &cache).assert_success("nix-store -r by the untrusted user");
    assert!(cache.is_valid(e2e));
    assert_authenticated_fetch(&nginx, &cache, 0);
}

/// Two `use` runs at the same time, for two caches, leave both configured (nix.conf and netrc),
/// and both caches then substitute.
fn use_concurrent_runs_keep_both_caches(e2e: &E2e) {
    let user = TestUser::create(e2e, "conc");
    let tls = Tls::create(e2e);
    let (token_a, token_b) = (new_token(), new_token());
    let (cache_a, nginx_a) = serve(e2e, "conc-a", Some(&tls), &token_a);
    let (cache_b, nginx_b) = serve(e2e, "conc-b", Some(&tls), &token_b);
    let _daemon = NixDaemon::start(e2e, &nix_conf(Some(&tls), &[&user]));
    // Different host names, so that each cache has its own netrc `machine`.
    let url_a = nginx_a.url_for_host("127.0.0.1");
    let url_b = nginx_b.url_for_host("localhost");

    let (out_a, out_b) = std::thread::scope(|s| {
        let a = s.spawn(|| use_cache(e2e, &user, &url_a, &cache_a.public_key, &token_a));
        let b = s.spawn(|| use_cache(e2e, &user, &url_b, &cache_b.public_key, &token_b));
        (a.join().unwrap(), b.join().unwrap())
    });
    out_a.assert_success("use cache A (concurrent)");
    out_b.assert_success("use cache B (concurrent)");

    let conf = user.read(".config/nix/nix.conf");
    let mut subs = setting(&conf, "extra-substituters");
    subs.sort();
    let mut want = vec![url_a.clone(), url_b.clone()];
    want.sort();
    assert_eq!(subs, want, "nix.conf:\n{conf}");
    let keys = setting(&conf, "extra-trusted-public-keys");
    assert!(
        keys.contains(&cache_a.public_key) && keys.contains(&cache_b.public_key),
        "nix.conf:\n{conf}"
    );
    let netrc_files = setting(&conf, "netrc-file");
    assert_eq!(netrc_files.len(), 1, "nix.conf:\n{conf}");
    let netrc = std::fs::read_to_string(&netrc_files[0]).unwrap();
    assert!(
        netrc.contains(&token_a) && netrc.contains(&token_b),
        "a netrc entry is missing"
    );

    substitute(&user, &cache_a).assert_success("substitute from cache A");
    substitute(&user, &cache_b).assert_success("substitute from cache B");
    assert_authenticated_fetch(&nginx_a, &cache_a, 0);
    assert_authenticated_fetch(&nginx_b, &cache_b, 0);
}

/// Running the same `use` twice changes nothing the second time: every file under HOME is
/// byte-identical (and keeps its mode).
fn use_twice_is_byte_identical(e2e: &E2e) {
    let user = TestUser::create(e2e, "idem");
    let token = new_token();
    let (cache, nginx) = serve(e2e, "idem", None, &token);
    let _daemon = NixDaemon::start(e2e, &nix_conf(None, &[&user]));

    use_cache(e2e, &user, &nginx.url(), &cache.public_key, &token).assert_success("first use");
    let first = snapshot(&user.home);
    assert!(
        first.keys().any(|p| p.ends_with("nix/nix.conf")),
        "the first use wrote no nix.conf: {:?}",
        first.keys().collect::<Vec<_>>()
    );
    use_cache(e2e, &user, &nginx.url(), &cache.public_key, &token).assert_success("second use");
    let diff = snapshot_diff(&first, &snapshot(&user.home));
    assert!(diff.is_empty(), "the second use changed files:\n{diff}");
}

crate::proofs!(
    testbed_substitutes_with_explicit_options,
    use_trusted_user_https,
    use_trusted_user_plain_http,
    use_untrusted_user_needs_administrator,
    use_concurrent_runs_keep_both_caches,
    use_twice_is_byte_identical,
);
