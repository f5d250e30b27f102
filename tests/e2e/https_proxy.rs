//! HTTPS caches through the loopback proxy (issue 20, "Proof with real parts"): the real
//! nix-daemon of each Nix under test, nginx over TLS with a CA made here (Bearer via a `map`
//! on `$http_authorization`, 401 otherwise; Basic via htpasswd; NAR redirects to another
//! origin), a real second local user, and the background service as `service install` starts
//! it where no user service manager answers (a detached `proxy start --persistent`; the
//! systemd route itself is proven in tests/e2e/service.rs). Proof 7 (the benchmark) is
//! scripts/bench-proxy.sh's HTTPS rows, not a test.

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// The user's nix.conf before anything: `service uninstall` and `remove` give these bytes back.
const USER_CONF: &str = "# mine\nkeep-outputs = true\n";

/// The bed: a trusted user with a private runtime dir and config.toml (file secret store, its
/// own proxy port), our CA, the daemon trusting it (redirected NARs come over TLS from nginx).
/// Fields drop in order: the user's processes first, the user last.
struct Hp<'a> {
    e2e: &'a E2e,
    _procs: UserProcs,
    daemon: NixDaemon,
    user: TestUser,
    tls: Tls,
    port: u16,
}

impl<'a> Hp<'a> {
    fn new(e2e: &'a E2e) -> Hp<'a> {
        Hp::with_trust(e2e, true)
    }

    /// The bed; `trusted`: whether the user is in `trusted-users`.
    fn with_trust(e2e: &'a E2e, trusted: bool) -> Hp<'a> {
        let user = TestUser::create(e2e, "h");
        let procs = UserProcs(user.uid);
        let tls = Tls::create(e2e);
        let mut conf = NixConf::new().ca_bundle(&tls.bundle);
        if trusted {
            conf = conf.trusted_user(&user.name);
        }
        let daemon = NixDaemon::start(e2e, &conf);
        let hp = Hp {
            e2e,
            _procs: procs,
            daemon,
            user,
            tls,
            port: free_port(),
        };
        hp.write(
            ".config/nixstore-auth/config.toml",
            &format!(
                "keyring-backend = \"file\"\n\n[proxy]\nport = {}\n",
                hp.port
            ),
        );
        hp.write(".config/nix/nix.conf", USER_CONF);
        let run = runtime_dir(hp.user.uid);
        let _ = fs::remove_dir_all(&run);
        fs::create_dir_all(&run).unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&run, Some(hp.user.uid), Some(hp.user.uid)).unwrap();
        hp
    }

    /// Writes a 0600 file below the user's HOME, owned by the user (directories 0700).
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        self.user.write_private(rel, text)
    }

    /// `nixstore-auth ARGS` as the user (runtime dir, a short proxy grace period).
    fn nsa(&self, args: &[&str]) -> UserCmd<'_> {
        self.user
            .cmd(&self.e2e.bin)
            .args(args)
            .env("XDG_RUNTIME_DIR", runtime_dir(self.user.uid))
            .env("NIXSTORE_AUTH_PROXY_IDLE_SECS", GRACE_SECS.to_string())
            .env("NO_COLOR", "1")
            .timeout(Duration::from_secs(120))
    }

    /// `use URL --public-key KEY ARGS...` with `token` on stdin (when given).
    fn use_cache(&self, url: &str, key: &str, token: Option<&str>, args: &[&str]) -> Output {
        let mut all = vec!["use", url, "--public-key", key];
        all.extend_from_slice(args);
        let mut cmd = self.nsa(&all);
        if let Some(t) = token {
            cmd = cmd.stdin(format!("{t}\n"));
        }
        let out = cmd.run();
        out.assert_success(&format!("use {url} {}", args.join(" ")));
        if let Some(t) = token {
            out.assert_hides(&[t]);
        }
        out
    }

    /// Each recorded cache's route, as `list --format json` says.
    fn routes(&self) -> Vec<(String, String)> {
        let out = self.nsa(&["list", "--format", "json"]).run();
        out.assert_success("list --format json");
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["route"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// `sh -c SCRIPT` as the user with HOME, USER and PATH only: plain Nix, no wrapper.
    fn plain(&self, script: &str) -> Output {
        self.user
            .bare_sh(&[], script)
            .timeout(Duration::from_secs(120))
            .run()
    }

    fn valid(&self, path: &str) -> bool {
        root_nix(self.e2e, "nix-store", &["--check-validity", path], None).success()
    }

    /// The files below HOME holding `needle`, outside our secret store's directory.
    fn outside_secret_store(&self, needle: &str) -> Vec<PathBuf> {
        let store = self.user.home.join(".local/share/nixstore-auth/secrets");
        files_holding(&self.user.home, needle, None)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| !p.starts_with(&store))
            .collect()
    }

    fn proxy_log(&self) -> String {
        self.user.read(".cache/nixstore-auth/proxy.log")
    }
}

/// A cache directory holding `n` signed paths (a [`SignedCache`] plus `n - 1` more).
fn cache_with(e2e: &E2e, tag: &str, n: usize) -> (SignedCache, Option<ExtraPaths>) {
    let cache = SignedCache::create(e2e, tag);
    let more = (n > 1).then(|| {
        let more = ExtraPaths::create(
            e2e,
            &format!("{tag}x"),
            n - 1,
            &cache_secret_key(e2e, tag),
        );
        run_root(
            "cp",
            [
                "-rT",
                more.dir.to_str().unwrap(),
                cache.dir.to_str().unwrap(),
            ],
            None,
        )
        .assert_success("merge the cache directories");
        more
    });
    (cache, more)
}

/// The access log's entries for URIs ending in `suffix` (or starting with `/nar/` when
/// `suffix` is "nar").
fn requests<'l>(log: &'l [AccessEntry], suffix: &str) -> Vec<&'l AccessEntry> {
    log.iter()
        .filter(|e| {
            if suffix == "nar" {
                e.uri.starts_with("/nar/")
            } else {
                e.uri.ends_with(suffix)
            }
        })
        .collect()
}

/// Proofs 1, 4 and 5, and `push`: a Bearer-only cache over TLS with our CA (`--auth bearer
/// --token-stdin --ca-file`), through `exec`; nginx logs the Bearer requests; no netrc holds
/// the token. `push` PUTs through the proxy with the Bearer header and the pushed path
/// substitutes back. A second Bearer cache answers NARs with a redirect to another origin: the
/// NARs come from there and its log shows no `Authorization`. Another local user gets no HTTP
/// answer from the proxy's port and finds neither the token nor the URL secret in any file.
fn bearer_cache_through_the_proxy(e2e: &E2e) {
    let hp = Hp::new(e2e);
    let token = new_token();
    let (cache, bmore) = cache_with(e2e, "hpb", 2);
    let bmore = bmore.unwrap();
    let nginx = Nginx::start(
        e2e,
        NginxOptions::new(&cache.dir)
            .tls(&hp.tls)
            .bearer(&token)
            .dav_put(),
    );
    // Redirects: R (Bearer) sends `/nar/...` to O (no auth), both over TLS, same directory.
    let (rcache, _) = cache_with(e2e, "hpr", 1);
    let origin = Nginx::start(e2e, NginxOptions::new(&rcache.dir).tls(&hp.tls));
    let redirecting = Nginx::start(
        e2e,
        NginxOptions::new(&rcache.dir)
            .tls(&hp.tls)
            .bearer(&token)
            .redirect_nars(&origin.url_for_host("localhost")),
    );
    let ca = hp.tls.ca_cert.to_str().unwrap();
    let bearer = ["--auth", "bearer", "--token-stdin", "--ca-file", ca];
    let mut args = vec!["--name", "hpa"];
    args.extend(bearer);
    hp.use_cache(&nginx.url(), &cache.public_key, Some(&token), &args);
    let mut args = vec!["--name", "hpr"];
    args.extend(bearer);
    hp.use_cache(&redirecting.url(), &rcache.public_key, Some(&token), &args);
    assert_eq!(
        hp.routes(),
        [("hpa".into(), "proxy".into()), ("hpr".into(), "proxy".into())]
    );
    // No netrc holds the token: not the user's (none at all below HOME outside the secret
    // store), not the daemon's.
    assert_eq!(hp.outside_secret_store(&token), Vec::<PathBuf>::new());
    let conf = hp.user.read(".config/nix/nix.conf");
    assert!(setting(&conf, "netrc-file").is_empty(), "{conf}");

    // Proof 1: exec -- nix-store -r P substitutes, with Bearer requests in nginx's log.
    let out = hp
        .nsa(&["exec", "--", "nix-store", "-r", &cache.store_path])
        .run();
    out.assert_success("exec -- nix-store -r P (Bearer cache)");
    out.assert_hides(&[&token]);
    assert!(cache.is_valid(e2e));
    let log = nginx.access_log();
    let want = format!("Bearer {token}");
    for what in [format!("{}.narinfo", cache.hash()), "nar".to_string()] {
        let got = requests(&log, &what);
        assert!(
            got.iter()
                .any(|e| e.status == 200 && e.method == "GET" && e.authorization == want),
            "no Bearer GET of {what} served: {log:#?}"
        );
    }
    for f in [
        hp.user.home.join(".netrc"),
        PathBuf::from("/etc/nix/netrc"),
        hp.daemon.etc_file("netrc"),
    ] {
        let text = fs::read_to_string(&f).unwrap_or_default();
        assert!(!text.contains(&token), "{} holds the token", f.display());
    }

    // push: PUT through the proxy, which adds the Bearer header; the path substitutes back.
    let key = hp.write(
        "cache-key",
        &fs::read_to_string(cache_secret_key(e2e, "hpb")).unwrap(),
    );
    let pushed = ExtraPaths::guard(e2e, add_paths(e2e, "hpbp", 1));
    let p3 = &pushed.paths[0];
    let from = nginx.access_log().len();
    let out = hp
        .nsa(&["push", "hpa", p3, "--secret-key", key.to_str().unwrap()])
        .run();
    out.assert_success("push to the Bearer cache");
    out.assert_hides(&[&token]);
    let log = nginx.access_log();
    let hash3 = &p3.rsplit('/').next().unwrap()[..32];
    let puts: Vec<&AccessEntry> = log[from..]
        .iter()
        .filter(|e| e.method == "PUT")
        .collect();
    assert!(
        puts.iter()
            .any(|e| e.uri == format!("/{hash3}.narinfo") && e.authorization == want)
            && puts
                .iter()
                .all(|e| e.authorization == want && (200..300).contains(&e.status)),
        "no Bearer PUT of the narinfo, or one refused: {puts:#?}"
    );
    pushed.delete_local(e2e);
    hp.nsa(&["exec", "--", "nix-store", "-r", p3])
        .run()
        .assert_success("exec -- nix-store -r of the pushed path");
    assert!(hp.valid(p3));

    // Proof 4: redirect to another origin: NARs from O, with no Authorization header there.
    let out = hp
        .nsa(&["exec", "--", "nix-store", "-r", &rcache.store_path])
        .run();
    out.assert_success("exec -- nix-store -r P (redirecting cache)");
    assert!(rcache.is_valid(e2e));
    let rlog = redirecting.access_log();
    assert!(
        requests(&rlog, "nar")
            .iter()
            .any(|e| e.status == 302 && e.authorization == want),
        "the cache did not redirect the NAR: {rlog:#?}"
    );
    let olog = origin.access_log();
    assert!(
        requests(&olog, "nar")
            .iter()
            .any(|e| e.status == 200 && e.method == "GET"),
        "the NAR did not come from the other origin: {olog:#?}"
    );
    assert!(
        olog.iter().all(|e| e.authorization.is_empty()),
        "a credential reached the other origin: {olog:#?}"
    );

    // The server takes another token now: through `exec`, a miss (the proxy kept from the
    // first attempt, with a long idle time, shows the refusal is remembered); after
    // `secret set` the next `exec` substitutes at once through the same proxy.
    let token2 = new_token();
    nginx.set_bearer(&token2, Some(&hp.tls));
    let p4 = &bmore.paths[0];
    let exec_kept = || {
        hp.nsa(&["exec", "--", "nix-store", "-r", p4])
            .env("NIXSTORE_AUTH_PROXY_IDLE_SECS", "60")
            .run()
    };
    let out = exec_kept();
    out.assert_code(1, "exec with a refused stored token");
    assert!(out.stderr.contains("don't know how to build"), "a miss: {out}");
    let proxies = proxy_pids(hp.user.uid);
    assert_eq!(proxies.len(), 1, "the proxy lingers: {proxies:?}");
    let told = fs::read_to_string(runtime_dir(hp.user.uid).join("nixstore-auth/notice"))
        .unwrap_or_default();
    assert!(
        told.contains("cache hpa needs you") && told.contains("secret set hpa"),
        "{told:?}"
    );
    let out = hp
        .nsa(&["secret", "set", "hpa", "--token-stdin"])
        .stdin(format!("{token2}\n"))
        .run();
    out.assert_success("secret set hpa");
    exec_kept().assert_success("exec right after secret set");
    assert!(hp.valid(p4));
    assert_eq!(
        proxy_pids(hp.user.uid),
        proxies,
        "the same proxy served it: {}",
        hp.proxy_log()
    );
    hp.nsa(&["proxy", "stop"]).run().assert_success("proxy stop");
    wait_until("the proxy to exit", Duration::from_secs(10), || {
        proxy_pids(hp.user.uid).is_empty()
    });
    let (token, old_token) = (token2, token);

    // Proof 5: another local user, with the background proxy serving the caches. Beside
    // them the same server recorded without `--ca-file`: the proxy verifies the certificate
    // (system roots only), so that one gets no answer from nginx.
    hp.use_cache(
        &nginx.url_for_host("localhost"),
        &cache.public_key,
        Some(&token),
        &["--name", "hpx", "--auth", "bearer", "--token-stdin"],
    );
    let served = nginx.access_log().len();
    hp.nsa(&["proxy", "start", "--persistent"])
        .run()
        .assert_success("proxy start --persistent");
    let secret = hp
        .user
        .read(".local/share/nixstore-auth/proxy-secret")
        .trim()
        .to_string();
    let url = format!("http://127.0.0.1:{}/{secret}/hpa/nix-cache-info", hp.port);
    let (code, body) = curl_status_as(&hp.user.name, &url);
    assert_eq!(code, 200, "the user's own request: {body}");
    let (code, body) = curl_status_as(&hp.user.name, &url.replace("/hpa/", "/hpx/"));
    assert_eq!(code, 502, "a certificate from an unknown CA: {body}");
    assert!(
        hp.proxy_log()
            .lines()
            .any(|l| l.contains("hpx/nix-cache-info") && l.contains("certificate")),
        "{}",
        hp.proxy_log()
    );
    assert_eq!(
        nginx.access_log().len(),
        served + 1,
        "nginx served a request over a connection it should not have got: {:#?}",
        nginx.access_log()
    );
    // Root (the nix-daemon) may only read through the port.
    let put = run_root(
        "curl",
        [
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "--data-binary",
            "x",
            &url.replace("nix-cache-info", "root-put.narinfo"),
        ],
        None,
    );
    assert_eq!(put.stdout.trim(), "403", "root's PUT: {put}");
    assert!(
        !nginx.access_log().iter().any(|e| e.uri.contains("root-put")),
        "root's PUT reached the cache"
    );
    let bob = TestUser::create(e2e, "o");
    let (code, body) = curl_status_as(&bob.name, &url);
    assert_eq!(code, 0, "another user got an HTTP answer from the port: {body}");
    hp.user.open_home();
    let found = readable_files_holding(
        e2e,
        &bob,
        &[token.clone(), old_token.clone(), secret.clone()],
        &[],
    );
    assert!(found.is_empty(), "another user reads a secret in {found:?}");
    let log = hp.proxy_log();
    for s in [&token, &old_token, &secret] {
        assert!(!log.contains(s.as_str()), "{log}");
    }
    hp.nsa(&["proxy", "stop"]).run().assert_success("proxy stop");
}

/// Proofs 2, 3 and 6, with the background service. `--route auto`: netrc for a static Basic
/// token in a netrc file, the proxy for a token command; a keyring token takes netrc until
/// `service install` moves it to the proxy (no netrc of ours holds it then). Plain
/// `env -i nix-store -r` (no `exec`) substitutes from the Basic keyring cache and from the
/// token-command cache; the accepted token rotates between two plain substitutions: both
/// succeed, and the command ran again exactly once per 401. `service uninstall` and `remove`
/// give nix.conf and netrc back byte for byte.
fn service_serves_keyring_and_command_tokens(e2e: &E2e) {
    let hp = Hp::new(e2e);
    let before_conf = hp.user.read(".config/nix/nix.conf");
    // The user's own netrc entry (`remove` leaves an empty netrc where none was: a netrc of
    // the user's own is what byte identity is about).
    let netrc_path = hp.write(
        ".config/nix/netrc",
        "machine git.example.org login me password mine\n",
    );
    let before_netrc = fs::read(&netrc_path).ok();

    // K: Basic (htpasswd); its token in the keyring (the file store here).
    let basic = new_token();
    let (kcache, kmore) = cache_with(e2e, "hpk", 2);
    let kmore = kmore.unwrap();
    let knginx = Nginx::start(
        e2e,
        NginxOptions::new(&kcache.dir)
            .tls(&hp.tls)
            .basic_auth(LOGIN, &basic),
    );
    // C: Bearer, the accepted token in a file a test rotates; the command prints it and
    // counts its runs.
    let t1 = new_token();
    let (ccache, cmore) = cache_with(e2e, "hpc", 3);
    let cmore = cmore.unwrap();
    let cnginx = Nginx::start(
        e2e,
        NginxOptions::new(&ccache.dir).tls(&hp.tls).bearer(&t1),
    );
    let token_file = hp.write("token", &format!("{t1}\n"));
    let runs = hp.write("runs", "");
    let command = format!(
        "sh -c 'echo run >> {}; cat {}'",
        runs.display(),
        token_file.display()
    );
    let ca = hp.tls.ca_cert.to_str().unwrap();

    // Proof 6, --route auto: a static Basic token in a netrc file takes netrc (N: the same
    // server under another host name, so that its netrc `machine` is its own).
    hp.use_cache(
        &knginx.url_for_host("localhost"),
        &kcache.public_key,
        Some(&basic),
        &["--name", "hpn", "--token-stdin", "--login", LOGIN],
    );
    hp.use_cache(
        &knginx.url(),
        &kcache.public_key,
        Some(&basic),
        &[
            "--name",
            "hpk",
            "--token-stdin",
            "--login",
            LOGIN,
            "--secret-store",
            "keyring",
            "--ca-file",
            ca,
        ],
    );
    hp.use_cache(
        &cnginx.url(),
        &ccache.public_key,
        None,
        &[
            "--name",
            "hpc",
            "--auth",
            "bearer",
            "--token-command",
            &command,
            "--ca-file",
            ca,
        ],
    );
    let route = |routes: &[(String, String)], name: &str| {
        routes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    };
    let routes = hp.routes();
    assert_eq!(route(&routes, "hpn"), "netrc", "{routes:?}");
    assert_eq!(route(&routes, "hpk"), "netrc", "{routes:?}");
    assert_eq!(route(&routes, "hpc"), "proxy", "{routes:?}");
    assert!(
        fs::read_to_string(&netrc_path)
            .unwrap_or_default()
            .contains(&basic),
        "the netrc cache's token is not in the netrc"
    );
    assert_eq!(fs::read_to_string(&runs).unwrap(), "", "use ran the command");
    hp.nsa(&["remove", "hpn"]).run().assert_success("remove hpn");

    // Proof 3 and 6: service install moves the keyring cache to the proxy.
    let out = hp.nsa(&["service", "install", "--dry-run"]).run();
    out.assert_success("service install --dry-run");
    assert!(out.all().contains("hpk"), "the dry run names the moved cache: {out}");
    hp.nsa(&["service", "install"])
        .run()
        .assert_success("service install");
    let routes = hp.routes();
    assert_eq!(route(&routes, "hpk"), "proxy", "{routes:?}");
    assert_eq!(hp.outside_secret_store(&basic), Vec::<PathBuf>::new());
    let conf = hp.user.read(".config/nix/nix.conf");
    assert!(!conf.contains(&knginx.url()), "the cache's own URL stayed: {conf}");

    let out = hp.plain(&format!("nix-store -r {}", kcache.store_path));
    out.assert_success("plain nix-store -r from the Basic keyring cache");
    assert!(kcache.is_valid(e2e));
    let klog = knginx.access_log();
    assert!(
        requests(&klog, "nar")
            .iter()
            .any(|e| e.status == 200 && e.user == LOGIN),
        "{klog:#?}"
    );

    // The stored token refused (the server's password changed): a miss, named in the log;
    // `secret set` hands the new one to the running proxy and the very next plain
    // `nix-store -r` of that path substitutes.
    let basic2 = new_token();
    run_root(
        "htpasswd",
        [
            "-c",
            "-i",
            knginx.dir.join("htpasswd").to_str().unwrap(),
            LOGIN,
        ],
        Some(basic2.as_bytes()),
    )
    .assert_success("htpasswd");
    let pk2 = &kmore.paths[0];
    hp.plain(&format!("nix-store -r {pk2}"))
        .assert_failure("plain nix-store -r with a refused stored token");
    let plog = hp.proxy_log();
    assert!(
        plog.contains("hpk") && plog.contains("nixstore-auth secret set hpk --token-stdin"),
        "{plog}"
    );
    let notice = runtime_dir(hp.user.uid).join("nixstore-auth/notice");
    let told = fs::read_to_string(&notice).unwrap_or_default();
    assert!(
        told.contains("cache hpk needs you") && told.contains("nixstore-auth secret set hpk"),
        "the shell hook's notice: {told:?}"
    );
    // `service status` counts HTTPS caches on the proxy route too: 1, naming the fix.
    let status = hp.nsa(&["service", "status"]).run();
    status.assert_code(1, "service status with a refused stored token");
    assert!(
        status.stdout.contains("cache hpk needs you")
            && status
                .stdout
                .contains("nixstore-auth secret set hpk --token-stdin"),
        "{status}"
    );
    status.assert_hides(&[&basic2]);
    let out = hp
        .nsa(&["secret", "set", "hpk", "--token-stdin"])
        .stdin(format!("{basic2}\n"))
        .run();
    out.assert_success("secret set");
    out.assert_hides(&[&basic2]);
    hp.plain(&format!("nix-store -r {pk2}"))
        .assert_success("plain nix-store -r right after secret set");
    assert!(!notice.exists(), "the notice stayed after the fix");
    assert!(hp.valid(pk2));

    // Proof 2: rotation between two plain substitutions.
    let out = hp.plain(&format!("nix-store -r {}", ccache.store_path));
    out.assert_success("plain nix-store -r from the token-command cache");
    assert!(ccache.is_valid(e2e));
    let runs_before = fs::read_to_string(&runs).unwrap().lines().count();
    assert!(runs_before >= 1, "the command never ran");
    let t2 = new_token();
    fs::write(&token_file, format!("{t2}\n")).unwrap();
    let from = cnginx.access_log().len();
    cnginx.set_bearer(&t2, Some(&hp.tls));
    let p2 = &cmore.paths[0];
    let out = hp.plain(&format!("nix-store -r {p2}"));
    out.assert_success("plain nix-store -r after the token rotated");
    assert!(hp.valid(p2));
    let log = cnginx.access_log();
    // The set_bearer check's own curl request is not the proxy's.
    let refused = log[from..]
        .iter()
        .filter(|e| e.status == 401 && e.authorization == format!("Bearer {t1}"))
        .count();
    let runs_after = fs::read_to_string(&runs).unwrap().lines().count();
    assert!(refused >= 1, "the old token was never refused: {log:#?}");
    assert_eq!(
        runs_after - runs_before,
        refused,
        "the command ran other than once per 401: {log:#?}"
    );
    assert!(
        log[from..]
            .iter()
            .any(|e| e.status == 200 && e.authorization == format!("Bearer {t2}")),
        "{log:#?}"
    );

    // A token only a person can replace: nginx takes T3, the command still prints T2. Plain
    // `nix-store -r` fails as a miss (the command ran once more, after the 401); the proxy log
    // and `doctor` name the cache and the reason. Once the command prints T3 and `use` records
    // it again, the very next plain `nix-store -r` of that path substitutes (its URL moved on).
    let t3 = new_token();
    let from = cnginx.access_log().len();
    cnginx.set_bearer(&t3, Some(&hp.tls));
    let p3 = &cmore.paths[1];
    let out = hp.plain(&format!("nix-store -r {p3}"));
    out.assert_failure("plain nix-store -r with a refused token");
    assert!(out.stderr.contains("don't know how to build"), "a miss: {out}");
    let runs_refused = fs::read_to_string(&runs).unwrap().lines().count();
    assert_eq!(runs_refused, runs_after + 1, "{:#?}", cnginx.access_log());
    assert!(
        cnginx.access_log()[from..]
            .iter()
            .all(|e| e.status != 200 || e.authorization == format!("Bearer {t3}")),
        "nginx served with a refused token"
    );
    let plog = hp.proxy_log();
    assert!(
        plog.lines()
            .any(|l| l.contains(" hpc/") && l.contains("the cache refused the credential (401)")),
        "{plog}"
    );
    let told = fs::read_to_string(&notice).unwrap_or_default();
    assert!(
        told.contains("cache hpc needs you") && told.contains("Run `nixstore-auth use hpc`"),
        "the shell hook's notice: {told:?}"
    );
    let doctor = hp.nsa(&["doctor"]).run();
    doctor.assert_code(1, "doctor with a refused token");
    assert!(
        doctor.stdout.contains("hpc") && doctor.stdout.contains("401"),
        "{doctor}"
    );
    doctor.assert_hides(&[&t1, &t2, &t3]);
    let status = hp.nsa(&["service", "status"]).run();
    status.assert_code(1, "service status with a refused command token");
    assert!(
        status.stdout.contains("cache hpc needs you")
            && status.stdout.contains("nixstore-auth use hpc"),
        "{status}"
    );
    status.assert_hides(&[&t1, &t2, &t3]);
    assert!(
        doctor
            .stdout
            .contains("route proxy: the token comes from a command")
            && doctor
                .stdout
                .contains("the background service serves it to plain `nix`"),
        "{doctor}"
    );
    fs::write(&token_file, format!("{t3}\n")).unwrap();
    hp.nsa(&["use", "hpc"]).run().assert_success("use hpc");
    let urls = fs::read_to_string(runtime_dir(hp.user.uid).join("nixstore-auth/nix.conf")).unwrap();
    assert!(urls.contains("/hpc~1"), "the URL moved on: {urls}");
    let out = hp.plain(&format!("nix-store -r {p3}"));
    out.assert_success("plain nix-store -r once the command prints the new token");
    assert!(!notice.exists(), "the notice stayed after the fix");
    assert!(hp.valid(p3));

    let plog = hp.proxy_log();
    for t in [&t1, &t2, &t3, &basic, &basic2] {
        assert!(!plog.contains(t.as_str()), "a token in the proxy log: {plog}");
    }

    // Proof 6: undone byte for byte.
    let out = hp.nsa(&["service", "uninstall", "--dry-run"]).run();
    out.assert_success("service uninstall --dry-run");
    assert!(out.all().contains("hpk"), "the dry run names the moved cache: {out}");
    hp.nsa(&["service", "uninstall"])
        .run()
        .assert_success("service uninstall");
    let routes = hp.routes();
    assert_eq!(route(&routes, "hpk"), "netrc", "{routes:?}");
    for name in ["hpk", "hpc"] {
        hp.nsa(&["remove", name]).run().assert_success("remove");
    }
    assert_eq!(hp.user.read(".config/nix/nix.conf"), before_conf);
    assert_eq!(fs::read(&netrc_path).ok(), before_netrc, "the netrc changed");
    wait_until("no proxy of the user", Duration::from_secs(10), || {
        proxy_pids(hp.user.uid).is_empty()
    });
}

/// Untrusted users: `use --auth bearer` by a user not in `trusted-users` records the cache
/// (the token in the secret store), exits 3 and prints the administrator's snippet as for S3:
/// the proxy's URL in a root-only file that /etc/nix/nix.conf `!include`s, no token anywhere
/// in it. Once root applied it and restarted the daemon, `exec -- nix-store -r` substitutes
/// with Bearer requests.
fn untrusted_user_through_the_administrators_include(e2e: &E2e) {
    let mut hp = Hp::with_trust(e2e, false);
    let token = new_token();
    let (cache, _) = cache_with(e2e, "hpu", 1);
    let nginx = Nginx::start(
        e2e,
        NginxOptions::new(&cache.dir).tls(&hp.tls).bearer(&token),
    );
    let ca = hp.tls.ca_cert.to_str().unwrap();
    let out = hp
        .nsa(&[
            "use",
            &nginx.url(),
            "--name",
            "hpu",
            "--public-key",
            &cache.public_key,
            "--auth",
            "bearer",
            "--token-stdin",
            "--ca-file",
            ca,
        ])
        .stdin(format!("{token}\n"))
        .run();
    out.assert_code(3, "use --auth bearer by an untrusted user");
    out.assert_hides(&[&token]);
    let secret = hp
        .user
        .read(".local/share/nixstore-auth/proxy-secret")
        .trim()
        .to_string();
    let proxy_url = format!("http://127.0.0.1:{}/{secret}/hpu", hp.port);
    let admin = AdminSnippet::parse(&out.stdout);
    assert_eq!(
        admin.private_file,
        PathBuf::from(format!("/etc/nix/nixstore-auth-{}-hpu.conf", hp.user.name)),
        "{out}"
    );
    assert_eq!(
        admin.private_lines,
        [format!("extra-trusted-substituters = {proxy_url}")],
        "{out}"
    );
    assert_eq!(
        admin.conf_lines,
        [
            format!("!include {}", admin.private_file.display()),
            format!("extra-trusted-public-keys = {}", cache.public_key),
        ],
        "{out}"
    );
    assert!(!out.stderr.contains(&secret), "{out}");
    assert_eq!(hp.routes(), [("hpu".into(), "proxy".into())]);
    assert_eq!(hp.outside_secret_store(&token), Vec::<PathBuf>::new());

    let _private = admin.apply(&e2e.nix, &hp.daemon);
    hp.daemon.restart();
    let out = hp
        .nsa(&["exec", "--", "nix-store", "-r", &cache.store_path])
        .run();
    out.assert_success("exec -- nix-store -r by the untrusted user");
    assert!(cache.is_valid(e2e));
    let log = nginx.access_log();
    assert!(
        requests(&log, "nar")
            .iter()
            .any(|e| e.status == 200 && e.authorization == format!("Bearer {token}")),
        "{log:#?}"
    );
    let daemon_netrc = fs::read_to_string(hp.daemon.etc_file("netrc")).unwrap_or_default();
    assert!(!daemon_netrc.contains(&token), "the token is in the daemon's netrc");
}

crate::proofs!(
    bearer_cache_through_the_proxy,
    untrusted_user_through_the_administrators_include,
    service_serves_keyring_and_command_tokens,
);
