//! Secrets can live in the OS keyring (issue 5, "Proof with real parts"): a real Secret Service
//! (gnome-keyring under `dbus-run-session`, running as the test user with a fresh HOME, in the
//! Nix under test's userland), the daemon of each Nix under test, nginx behind Basic auth, moto
//! for S3/STS with auth on. Also the 0600 file fallback when no Secret Service runs.

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The name the tests record their cache under (`use --name`).
const NAME: &str = "kr";
/// A signed cache behind nginx (plain HTTP) with Basic auth `LOGIN`/`token`.
fn serve(e2e: &E2e, tag: &str, token: &str) -> (SignedCache, Nginx) {
    let cache = SignedCache::create(e2e, tag);
    let nginx = Nginx::start(e2e, NginxOptions::new(&cache.dir).basic_auth(LOGIN, token));
    (cache, nginx)
}

/// Changes the password nginx accepts for `LOGIN` (nginx reads the file on every request).
fn rotate_nginx_password(nginx: &Nginx, token: &str) {
    let file = nginx.dir.join("htpasswd");
    run_root(
        "htpasswd",
        ["-i", file.to_str().unwrap(), LOGIN],
        Some(token.as_bytes()),
    )
    .assert_success("htpasswd (rotate)");
}

/// `use URL --name NAME --public-key KEY --token-stdin --login LOGIN --secret-store keyring`.
fn use_keyring(e2e: &E2e, s: &UserSession, url: &str, key: &str, token: &str) -> Output {
    s.nsa(
        e2e,
        [
            "use",
            url,
            "--name",
            NAME,
            "--public-key",
            key,
            "--token-stdin",
            "--login",
            LOGIN,
            "--secret-store",
            "keyring",
        ],
    )
    .stdin(format!("{token}\n"))
    .run()
}

/// `nixstore-auth exec -- nix-store -r PATH` as the user, through the daemon.
fn exec_substitute(e2e: &E2e, s: &UserSession, path: &str) -> Output {
    s.nsa(e2e, ["exec", "--", "nix-store", "-r", path]).run()
}

/// Plain `nix-store -r PATH` as the user, through the daemon.
fn plain_substitute(s: &UserSession, path: &str) -> Output {
    s.cmd("nix-store").args(["-r", path]).run()
}

/// A store path with a valid name whose hash no cache holds.
fn missing_path(cache: &SignedCache) -> String {
    let (dir, base) = cache.store_path.rsplit_once('/').unwrap();
    format!("{dir}/{}-{}", "0".repeat(32), &base[33..])
}

/// Asserts that no file under HOME, the session's runtime and temporary directories, or (among
/// files written since `started`) /tmp holds `secret`.
#[track_caller]
fn assert_in_no_file(s: &UserSession, secret: &str, started: SystemTime, what: &str) {
    let mut found = files_holding(&s.user.home, secret, None);
    if let Some(rt) = &s.runtime {
        found.extend(files_holding(rt, secret, None));
    }
    found.extend(files_holding(&s.tmp, secret, None));
    found.extend(files_holding(Path::new("/tmp"), secret, Some(started)));
    found.sort();
    found.dedup();
    assert!(found.is_empty(), "{what} is in files: {found:?}");
}

/// Asserts that `out` does not show `secret` (secrets never in output).
#[track_caller]
fn assert_not_shown(out: &Output, secret: &str, what: &str) {
    assert!(
        !out.all().contains(secret),
        "{what} appears in the output of `{}`",
        out.what
    );
}

/// Asserts that the keyring holds exactly `account` with `secret` (compared, never printed).
#[track_caller]
fn assert_keyring_holds(s: &UserSession, account: &str, secret: &str) {
    let entries = s.keyring_entries();
    let accounts: Vec<&str> = entries.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(accounts, vec![account], "keyring accounts");
    assert!(
        entries[0].1 == secret,
        "the keyring entry {account} does not hold the expected secret"
    );
}

/// The running command's netrc, as `exec` hands it over: the path from `NIX_CONFIG`, its mode
/// and its directory's mode, and its lines with passwords blanked (printed by a shell run
/// through `exec`, as the user).
fn exec_netrc_probe(e2e: &E2e, s: &UserSession) -> Output {
    let script = r#"f=$(printf '%s\n' "$NIX_CONFIG" | sed -n 's/^netrc-file = //p')
[ -n "$f" ] || { echo "no netrc-file in NIX_CONFIG: $NIX_CONFIG"; exit 2; }
echo "file=$f"
echo "ttl=$(printf '%s\n' "$NIX_CONFIG" | sed -n 's/^narinfo-cache-negative-ttl = //p')"
echo "mode=$(stat -c %a "$f") dirmode=$(stat -c %a "$(dirname "$f")") owner=$(stat -c %U "$f")"
sed 's/password [^ ]*/password BLANKED/' "$f""#;
    s.nsa(e2e, ["exec", "--", "sh", "-c", script]).run()
}

/// The value of `key=` in the probe's output.
fn probe_value<'o>(out: &'o Output, key: &str) -> &'o str {
    out.stdout
        .lines()
        .flat_map(|l| l.split(' '))
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in the probe's output\n{out}"))
}

/// Step 1: `use --secret-store keyring` puts the token in the real Secret Service (secret-tool finds
/// it under service nixstore-auth, account cache-token:NAME), writes the substituter and key to
/// nix.conf, and writes the token to no file at all (HOME, runtime dir, temp dirs).
fn keyring_use_stores_the_token_in_the_secret_service_only(e2e: &E2e) {
    let started = SystemTime::now();
    let user = TestUser::create(e2e, "kuse");
    let token = new_token();
    let (cache, nginx) = serve(e2e, "kuse", &token);
    let _daemon = NixDaemon::start(e2e, &NixConf::new().trusted_user(&user.name));
    let s = UserSession::with_keyring(e2e, &user);
    assert!(
        s.keyring_entries().is_empty(),
        "a fresh keyring already holds entries"
    );
    let url = nginx.url();

    let out = use_keyring(e2e, &s, &url, &cache.public_key, &token);
    out.assert_success("use --secret-store keyring");
    assert_not_shown(&out, &token, "the token");
    assert!(
        out.stderr.contains("OS keyring"),
        "use does not say that the token went to the keyring:\n{out}"
    );

    assert_keyring_holds(&s, &format!("cache-token:{NAME}"), &token);
    // doctor checks the cache with the keyring's token, the one exec uses.
    let doctor = s.nsa(e2e, ["doctor", NAME]).run();
    assert!(
        doctor.stdout.contains("reachable, authenticated")
            && !doctor.all().contains("no token is recorded"),
        "doctor did not check the cache with the keyring's token:\n{doctor}"
    );
    assert_not_shown(&doctor, &token, "doctor");
    let conf = user.read(".config/nix/nix.conf");
    assert_eq!(
        setting(&conf, "extra-substituters"),
        vec![url],
        "nix.conf:\n{conf}"
    );
    assert_eq!(
        setting(&conf, "extra-trusted-public-keys"),
        vec![cache.public_key.clone()],
        "nix.conf:\n{conf}"
    );
    assert!(
        setting(&conf, "netrc-file").is_empty(),
        "a keyring cache needs no netrc-file line:\n{conf}"
    );
    assert!(
        !user.home.join(".config/nix/netrc").exists(),
        "use wrote a netrc although the token went to the keyring"
    );
    assert_in_no_file(&s, &token, started, "the token");
    // Proves the scan can see the keyring's files, and that they do not hold it in clear.
    assert!(
        user.home.join(".local/share/keyrings").is_dir(),
        "gnome-keyring kept no files under HOME: is the test's keyring the one in use?"
    );
}

/// Step 2: With the real nix-daemon and nginx: after `use --secret-store keyring`, plain
/// `nix-store -r PATH` fails (no credential: nginx answers 401), and `exec -- nix-store -r PATH`
/// substitutes the same PATH right after, authenticated. The daemon met the cache before (an
/// authenticated lookup of a path it lacks), so the plain attempt left a remembered narinfo
/// miss: only the forwarded `narinfo-cache-negative-ttl = 0` lets `exec` succeed. Afterwards no
/// file in the runtime or temporary directories holds the token.
fn keyring_exec_substitutes_through_the_daemon_after_a_plain_failure(e2e: &E2e) {
    let started = SystemTime::now();
    let user = TestUser::create(e2e, "kexec");
    let token = new_token();
    let (cache, nginx) = serve(e2e, "kexec", &token);
    let daemon = NixDaemon::start(e2e, &NixConf::new().trusted_user(&user.name));
    let s = UserSession::with_keyring(e2e, &user);
    let url = nginx.url();
    use_keyring(e2e, &s, &url, &cache.public_key, &token).assert_success("use");

    // The daemon meets the cache with credentials (nix-cache-info 200), so that the plain
    // attempt below is remembered as a narinfo miss instead of the cache being skipped.
    let missing = missing_path(&cache);
    let out = exec_substitute(e2e, &s, &missing);
    out.assert_failure("exec -- nix-store -r of a path no cache has");
    assert_not_shown(&out, &token, "the token");
    assert!(
        nginx
            .access_log()
            .iter()
            .any(|e| e.uri == "/nix-cache-info" && e.user == LOGIN && e.status == 200),
        "the daemon never fetched nix-cache-info with credentials: {:#?}",
        nginx.access_log()
    );

    let served = nginx.access_log().len();
    let out = plain_substitute(&s, &cache.store_path);
    out.assert_failure("plain nix-store -r with the token only in the keyring");
    assert!(!cache.is_valid(e2e));
    let narinfo = format!("/{}.narinfo", cache.hash());
    let log = nginx.access_log();
    assert!(
        log[served..]
            .iter()
            .any(|e| e.uri == narinfo && e.user.is_empty() && e.status == 401),
        "nginx did not answer the plain attempt's narinfo request with 401: {:#?}",
        &log[served..]
    );
    assert!(
        log[served..].iter().all(|e| e.status != 200),
        "nginx served files without credentials"
    );

    let served = nginx.access_log().len();
    let out = exec_substitute(e2e, &s, &cache.store_path);
    out.assert_success("exec -- nix-store -r right after the plain failure");
    assert_not_shown(&out, &token, "the token");
    assert!(cache.is_valid(e2e));
    assert_authenticated_fetch(&nginx, &cache, served);

    // The ephemeral netrc while the command runs: 0600, the user's, in the 0700 runtime dir,
    // with the cache's entry; the negative TTL forwarded with it.
    let probe = exec_netrc_probe(e2e, &s);
    probe.assert_success("exec -- sh (netrc probe)");
    assert_not_shown(&probe, &token, "the token");
    let runtime_dir = s.runtime.as_ref().unwrap().join("nixstore-auth");
    let file = PathBuf::from(probe_value(&probe, "file"));
    assert_eq!(file.parent(), Some(runtime_dir.as_path()), "{probe}");
    assert_eq!(probe_value(&probe, "mode"), "600", "{probe}");
    assert_eq!(probe_value(&probe, "dirmode"), "700", "{probe}");
    assert_eq!(probe_value(&probe, "owner"), user.name, "{probe}");
    assert_eq!(probe_value(&probe, "ttl"), "0", "{probe}");
    assert!(
        probe
            .stdout
            .contains(&format!("machine 127.0.0.1 login {LOGIN} password BLANKED")),
        "the ephemeral netrc lacks the cache's entry:\n{probe}"
    );
    assert!(!file.exists(), "exec left {} behind", file.display());

    let left: Vec<_> = fs::read_dir(&runtime_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "exec left files behind: {left:?}");
    assert_in_no_file(&s, &token, started, "the token");

    // The forwarded netrc-file hides the daemon's own netrc for the command: said once.
    daemon.write_netrc("# the administrator's entries\n");
    let probe = exec_netrc_probe(e2e, &s);
    probe.assert_success("exec -- sh with /etc/nix/netrc present");
    assert_eq!(
        probe.stderr.matches("hides /etc/nix/netrc").count(),
        1,
        "exec should warn once that the forwarded netrc-file hides /etc/nix/netrc:\n{probe}"
    );
}

/// Step 3: Migration: a cache first configured with the netrc store, then
/// `use NAME --secret-store keyring`, moves the token into the keyring and out of the netrc;
/// the netrc's other entries (and comments) survive byte for byte, and exec still works.
fn keyring_use_migrates_a_netrc_token(e2e: &E2e) {
    let started = SystemTime::now();
    let user = TestUser::create(e2e, "kmig");
    let token = new_token();
    let (cache, nginx) = serve(e2e, "kmig", &token);
    let _daemon = NixDaemon::start(e2e, &NixConf::new().trusted_user(&user.name));
    let s = UserSession::with_keyring(e2e, &user);
    let url = nginx.url();

    // The user's own netrc with other entries, where `use` will add the cache's.
    let nix_dir = user.home.join(".config/nix");
    let original = "# my own entries\n\
                    machine git.example.org login me password other-secret-1\n\
                    \n\
                    machine files.example.net\n  login you\n  password other-secret-2\n";
    s.cmd("mkdir")
        .args(["-p", nix_dir.to_str().unwrap()])
        .run()
        .assert_success("mkdir");
    let netrc = nix_dir.join("netrc");
    s.cmd("sh")
        .args(["-c", &format!("umask 077 && cat > {}", netrc.display())])
        .stdin(original)
        .run()
        .assert_success("write the user's netrc");

    let out = s
        .nsa(
            e2e,
            [
                "use",
                &url,
                "--name",
                NAME,
                "--public-key",
                &cache.public_key,
                "--token-stdin",
                "--login",
                LOGIN,
            ],
        )
        .stdin(format!("{token}\n"))
        .run();
    out.assert_success("use with the netrc store");
    let text = fs::read_to_string(&netrc).unwrap();
    assert!(text.contains(&token), "use wrote no netrc entry");
    assert!(text.starts_with(original), "use changed other entries");
    assert!(
        s.keyring_entries().is_empty(),
        "the netrc store put something in the keyring"
    );
    let conf = user.read(".config/nix/nix.conf");
    assert_eq!(
        setting(&conf, "netrc-file"),
        vec![netrc.display().to_string()]
    );

    let out = s.nsa(e2e, ["use", NAME, "--secret-store", "keyring"]).run();
    out.assert_success("use NAME --secret-store keyring (migration)");
    assert_not_shown(&out, &token, "the token");
    assert!(
        out.stderr.contains("moved the token"),
        "use does not say that it moved the token:\n{out}"
    );
    assert_keyring_holds(&s, &format!("cache-token:{NAME}"), &token);
    let text = fs::read_to_string(&netrc).unwrap();
    assert!(!text.contains(&token), "the token is still in the netrc");
    assert_eq!(
        text, original,
        "the netrc's other entries did not survive byte for byte"
    );
    assert_eq!(
        fs::metadata(&netrc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let conf = user.read(".config/nix/nix.conf");
    assert_eq!(setting(&conf, "extra-substituters"), vec![url.clone()]);
    assert_in_no_file(&s, &token, started, "the migrated token");

    let served = nginx.access_log().len();
    let out = exec_substitute(e2e, &s, &cache.store_path);
    out.assert_success("exec -- nix-store -r after the migration");
    assert!(cache.is_valid(e2e));
    assert_authenticated_fetch(&nginx, &cache, served);
    // The user's own entries travel in the ephemeral netrc too (Nix reads only that one).
    let probe = exec_netrc_probe(e2e, &s);
    probe.assert_success("exec -- sh (netrc probe)");
    for machine in ["git.example.org", "files.example.net", "127.0.0.1"] {
        assert!(
            probe.stdout.contains(&format!("machine {machine}")),
            "the ephemeral netrc lacks {machine}:\n{probe}"
        );
    }
    assert_in_no_file(&s, &token, started, "the migrated token");
}

/// Step 4: `secret set` rotates the token (the new one works through exec, the old one is gone from
/// the keyring), `secret status` says where it lives without printing it, `remove` deletes the
/// keyring entry too.
fn keyring_secret_set_status_and_remove(e2e: &E2e) {
    let started = SystemTime::now();
    let user = TestUser::create(e2e, "krot");
    let old = new_token();
    let new = new_token();
    let (cache, nginx) = serve(e2e, "krot", &old);
    let _daemon = NixDaemon::start(e2e, &NixConf::new().trusted_user(&user.name));
    let s = UserSession::with_keyring(e2e, &user);
    let url = nginx.url();
    use_keyring(e2e, &s, &url, &cache.public_key, &old).assert_success("use");

    // The server rotates: the stored (old) token no longer works.
    rotate_nginx_password(&nginx, &new);
    let served = nginx.access_log().len();
    let out = exec_substitute(e2e, &s, &cache.store_path);
    out.assert_failure("exec with the old token after the server rotated");
    assert!(!cache.is_valid(e2e));
    assert!(
        nginx.access_log()[served..]
            .iter()
            .any(|e| e.user == LOGIN && e.status == 401),
        "nginx did not refuse the old token: {:#?}",
        &nginx.access_log()[served..]
    );

    let out = s
        .nsa(e2e, ["secret", "set", NAME, "--token-stdin"])
        .stdin(format!("{new}\n"))
        .run();
    out.assert_success("secret set");
    assert_not_shown(&out, &new, "the new token");
    assert_not_shown(&out, &old, "the old token");
    assert_keyring_holds(&s, &format!("cache-token:{NAME}"), &new);
    assert_in_no_file(&s, &old, started, "the old token");

    let served = nginx.access_log().len();
    let out = exec_substitute(e2e, &s, &cache.store_path);
    out.assert_success("exec with the rotated token");
    assert!(cache.is_valid(e2e));
    assert_authenticated_fetch(&nginx, &cache, served);

    for args in [
        vec!["secret", "status", NAME],
        vec!["secret", "status"],
        vec!["secret", "status", NAME, "--json"],
    ] {
        let out = s.nsa(e2e, &args).run();
        out.assert_success("secret status");
        assert_not_shown(&out, &new, "the token");
        assert!(
            out.stdout.contains(NAME) && out.stdout.contains("OS keyring"),
            "secret status does not say that {NAME}'s token is in the OS keyring:\n{out}"
        );
    }
    let json = s.nsa(e2e, ["secret", "status", NAME, "--json"]).run();
    let rows: serde_json::Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("secret status --json: {e}\n{json}"));
    assert_eq!(rows[0]["name"], NAME, "{json}");
    assert_eq!(rows[0]["present"], true, "{json}");

    let out = s.nsa(e2e, ["remove", NAME]).run();
    out.assert_success("remove");
    assert_not_shown(&out, &new, "the token");
    assert!(
        s.keyring_entries().is_empty(),
        "remove left keyring entries: {:?}",
        s.keyring_accounts()
    );
    let conf = user.read(".config/nix/nix.conf");
    assert!(!conf.contains(&url), "remove left the URL:\n{conf}");
    assert_in_no_file(&s, &new, started, "the token");
}

/// Step 5: Without a Secret Service (no session bus): `use --secret-store keyring` says that secrets
/// go to 0600 files, the store file is 0600 in a 0700 directory, `exec` substitutes through the
/// daemon with a netrc in a private temporary directory that is gone afterwards; with
/// `keyring-backend = "os"` in config.toml the same commands fail with a clear error.
fn file_fallback_without_a_secret_service(e2e: &E2e) {
    let started = SystemTime::now();
    let user = TestUser::create(e2e, "kfile");
    let token = new_token();
    let (cache, nginx) = serve(e2e, "kfile", &token);
    let _daemon = NixDaemon::start(e2e, &NixConf::new().trusted_user(&user.name));
    let s = UserSession::without_keyring(e2e, &user);
    let url = nginx.url();

    let out = use_keyring(e2e, &s, &url, &cache.public_key, &token);
    out.assert_success("use --secret-store keyring without a Secret Service");
    assert_not_shown(&out, &token, "the token");
    assert!(
        out.stderr.contains("no OS keyring") && out.stderr.contains("0600 files"),
        "use does not warn that secrets go to 0600 files:\n{out}"
    );
    let secrets_dir = user.home.join(".local/share/nixstore-auth/secrets");
    let holders = files_holding(&user.home, &token, None);
    assert_eq!(holders.len(), 1, "files holding the token: {holders:?}");
    let (store_file, mode) = holders[0].clone();
    assert_eq!(
        store_file.parent(),
        Some(secrets_dir.as_path()),
        "{holders:?}"
    );
    assert_eq!(mode, 0o600, "{}", store_file.display());
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&secrets_dir), 0o700);
    assert_eq!(mode(secrets_dir.parent().unwrap()), 0o700);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&store_file).unwrap().uid(), user.uid);
    let conf = user.read(".config/nix/nix.conf");
    assert!(setting(&conf, "netrc-file").is_empty(), "nix.conf:\n{conf}");

    let served = nginx.access_log().len();
    let out = exec_substitute(e2e, &s, &cache.store_path);
    out.assert_success("exec -- nix-store -r with the file store");
    assert_not_shown(&out, &token, "the token");
    assert_eq!(
        out.stderr.matches("no OS keyring").count(),
        1,
        "exec should warn once about the file store:\n{out}"
    );
    assert!(cache.is_valid(e2e));
    assert_authenticated_fetch(&nginx, &cache, served);

    // No runtime dir: the netrc goes to a private directory under TMPDIR, removed afterwards.
    let probe = exec_netrc_probe(e2e, &s);
    probe.assert_success("exec -- sh (netrc probe)");
    let file = PathBuf::from(probe_value(&probe, "file"));
    assert_eq!(
        file.parent().and_then(Path::parent),
        Some(s.tmp.as_path()),
        "{probe}"
    );
    assert_eq!(probe_value(&probe, "mode"), "600", "{probe}");
    assert_eq!(probe_value(&probe, "dirmode"), "700", "{probe}");
    let left: Vec<_> = fs::read_dir(&s.tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "exec left files in TMPDIR: {left:?}");
    let found = files_holding(Path::new("/tmp"), &token, Some(started));
    let outside: Vec<_> = found.iter().filter(|(p, _)| *p != store_file).collect();
    assert!(
        outside.is_empty(),
        "the token is in files besides the store: {outside:?}"
    );

    // keyring-backend = "os" and no keyring: a clear error, nothing run.
    let config = user.home.join(".config/nixstore-auth/config.toml");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, format!("keyring-backend = \"os\"\n{text}")).unwrap();
    let out = s.nsa(e2e, ["exec", "--", "echo", "RAN"]).run();
    out.assert_failure("exec with keyring-backend = \"os\" and no keyring");
    assert!(!out.stdout.contains("RAN"), "exec ran the command:\n{out}");
    assert!(
        out.stderr.contains("keyring-backend = \"os\"") && out.stderr.contains("no OS keyring"),
        "the error does not explain the missing keyring:\n{out}"
    );
    let out = s
        .nsa(e2e, ["secret", "set", NAME, "--token-stdin"])
        .stdin("x\n")
        .run();
    out.assert_failure("secret set with keyring-backend = \"os\" and no keyring");
    assert!(
        out.stderr.contains("keyring-backend"),
        "the error does not name the setting:\n{out}"
    );
    assert_eq!(
        files_holding(&user.home, &token, None).len(),
        1,
        "the failed commands changed the stored token"
    );
}

/// The bucket the AWS test reads (with a unique tag: the run's moto is shared), made by
/// tests/support/py/moto.py proxy-bed with an IAM user, its key and the role `cache-TAG`.
const BUCKET: &str = "keyring-e2e";

/// Step 6: `aws add-key` keeps a profile's long-term key in the keyring, so that ~/.aws/credentials
/// holds no secret; `exec --profile ROLE --mfa-code` assumes the MFA role with it (moto STS) and
/// the command reads the private bucket with the session; after `aws remove-key` (which also
/// forgets the session assumed with the key) the same exec fails with an error that says how to
/// add the key back.
fn aws_add_key_feeds_an_mfa_role_session(e2e: &E2e) {
    let started = SystemTime::now();
    let user = TestUser::create(e2e, "kaws");
    let moto = Moto::shared(true);
    let tag = unique_tag();
    let bucket = format!("{BUCKET}-{tag}");
    let setup = moto.fixture(e2e, "proxy-bed", &[&bucket, &tag]);
    setup.assert_success("moto setup (it also proves that auth is on)");
    let keys: serde_json::Value = serde_json::from_str(setup.stdout.trim()).unwrap();
    let role_arn = keys["role_arn"].as_str().unwrap().to_string();
    let role_name = role_arn.rsplit('/').next().unwrap().to_string();
    let key_id = keys["user"]["access_key_id"].as_str().unwrap().to_string();
    let secret = keys["user"]["secret_access_key"]
        .as_str()
        .unwrap()
        .to_string();
    let s = UserSession::with_keyring(e2e, &user);

    // The profiles: a role with MFA whose source profile has no keys in any file.
    let aws = user.home.join(".aws");
    s.cmd("mkdir")
        .args(["-m", "700", aws.to_str().unwrap()])
        .run()
        .assert_success("mkdir ~/.aws");
    let write = |name: &str, text: &str| {
        s.cmd("sh")
            .args(["-c", &format!("cat > {}", aws.join(name).display())])
            .stdin(text)
            .run()
            .assert_success("write an AWS file");
    };
    write(
        "config",
        &format!(
            "[profile base]\nregion = us-east-1\n\n\
             [profile role]\nrole_arn = {role_arn}\nsource_profile = base\n\
             mfa_serial = arn:aws:iam::123456789012:mfa/e2e\nregion = us-east-1\n"
        ),
    );
    write(
        "credentials",
        "[base]\n# its key is in the OS keyring: nixstore-auth aws add-key --profile base\n",
    );
    // moto's own GetSessionToken hands out keys it then refuses (TESTBED.md): the direct
    // AssumeRole with the code here; tests/e2e/sessions.rs proves the MFA base session.
    s.cmd("sh")
        .args([
            "-c",
            "mkdir -p ~/.config/nixstore-auth && echo 'mfa-base-session = false' > ~/.config/nixstore-auth/config.toml",
        ])
        .run()
        .assert_success("write config.toml");

    let out = s
        .nsa(e2e, ["aws", "add-key", "--profile", "base"])
        .stdin(format!("{key_id}\n{secret}\n"))
        .run();
    out.assert_success("aws add-key");
    assert_not_shown(&out, &secret, "the secret key");
    assert!(
        !out.stderr.contains("still holds a secret"),
        "add-key warns about a credentials file that holds no secret:\n{out}"
    );
    let entries = s.keyring_entries();
    let stored = entries
        .iter()
        .find(|(a, _)| a == "aws-key:base")
        .unwrap_or_else(|| panic!("no aws-key:base in the keyring: {:?}", s.keyring_accounts()));
    let value: serde_json::Value = serde_json::from_str(&stored.1).expect("the stored key is JSON");
    assert!(
        value["AccessKeyId"] == key_id.as_str() && value["SecretAccessKey"] == secret.as_str(),
        "the keyring entry aws-key:base does not hold the key"
    );
    assert_in_no_file(&s, &secret, started, "the secret access key");

    // Reads an object of the private bucket with the credentials exec put in the environment.
    let read_object = format!(
        "import boto3, botocore.config as c\n\
         cfg = c.Config(s3={{'addressing_style': 'path'}}, retries={{'max_attempts': 1}})\n\
         print(boto3.client('sts').get_caller_identity()['Arn'])\n\
         s3 = boto3.client('s3', config=cfg)\n\
         print(s3.get_object(Bucket='{bucket}', Key='cache/nix-cache-info')['Body'].read().decode())\n"
    );
    let python = e2e.nix.python();
    let exec_read = || {
        s.nsa(
            e2e,
            [
                "exec",
                "--profile",
                "role",
                "--mfa-code",
                "123456",
                "--",
                python.to_str().unwrap(),
                "-c",
                &read_object,
            ],
        )
        .env("AWS_ENDPOINT_URL", moto.url())
        .run()
    };

    // Without exec there are no credentials at all: the bucket is out of reach.
    let out = s
        .cmd(&python)
        .args(["-c", &read_object])
        .env("AWS_ENDPOINT_URL", moto.url())
        .run();
    out.assert_failure("reading the bucket without exec");
    assert!(!out.stdout.contains("StoreDir"), "{out}");

    let out = exec_read();
    out.assert_success("exec --profile role --mfa-code ... -- python (boto3)");
    assert_not_shown(&out, &secret, "the secret key");
    assert!(
        out.stdout.contains(&format!("assumed-role/{role_name}/")),
        "the command did not run as the assumed role:\n{out}"
    );
    assert!(
        out.stdout.contains("StoreDir: /nix/store"),
        "the command did not read the object:\n{out}"
    );
    // The session is cached in the keyring as well (never in a file).
    let accounts = s.keyring_accounts();
    assert!(
        accounts.iter().any(|a| a.starts_with("aws-session:")),
        "no cached session in the keyring: {accounts:?}"
    );
    assert_in_no_file(&s, &secret, started, "the secret access key");

    let out = s.nsa(e2e, ["aws", "remove-key", "--profile", "base"]).run();
    out.assert_success("aws remove-key");
    assert!(
        out.stderr.contains("forgot 1 cached session"),
        "remove-key does not say that it dropped the session assumed with the key:\n{out}"
    );
    let accounts = s.keyring_accounts();
    assert!(
        accounts.is_empty(),
        "remove-key left the key or a session assumed with it in the keyring: {accounts:?}"
    );
    // No cached session survives the key: the next exec needs the key and fails.
    let out = exec_read();
    out.assert_failure("exec after aws remove-key");
    assert!(
        !out.stdout.contains("StoreDir"),
        "the command ran and read the bucket:\n{out}"
    );
    assert!(
        out.stderr.contains("aws add-key --profile base"),
        "the error does not say how to store the key again:\n{out}"
    );
    let out = s.nsa(e2e, ["aws", "remove-key", "--profile", "base"]).run();
    out.assert_failure("aws remove-key of a key that is gone");
    assert!(
        out.stderr.contains("no access key is stored"),
        "unclear error:\n{out}"
    );
}

/// A locked keyring (the login keyring was made under another password, so gnome-keyring
/// cannot unlock it and a write would need a prompt): `use --secret-store keyring` fails with a
/// message that says how to unlock, shows no token, and changes no file.
fn locked_keyring_gives_a_clear_error_and_changes_nothing(e2e: &E2e) {
    let user = TestUser::create(e2e, "klock");
    let token = new_token();
    let (cache, nginx) = serve(e2e, "klock", &token);
    let _daemon = NixDaemon::start(e2e, &NixConf::new().trusted_user(&user.name));
    {
        let first = UserSession::with_keyring(e2e, &user);
        use_keyring(e2e, &first, &nginx.url(), &cache.public_key, &token)
            .assert_success("use with the keyring unlocked");
        assert_keyring_holds(&first, &format!("cache-token:{NAME}"), &token);
    }
    let before = snapshot(&user.home.join(".config"));
    let locked = UserSession::with_keyring_password(e2e, &user, "not-the-keyring-password");
    let other = new_token();
    let out = use_keyring(e2e, &locked, &nginx.url(), &cache.public_key, &other);
    out.assert_failure("use with a locked keyring");
    assert!(
        out.stderr.contains("locked"),
        "no word of a locked keyring:\n{out}"
    );
    assert!(
        out.stderr.contains("gnome-keyring-daemon --unlock")
            && out.stderr.contains("keyring-backend"),
        "the error does not say how to unlock or avoid it:\n{out}"
    );
    assert_not_shown(&out, &other, "the token");
    assert_not_shown(&out, &token, "the old token");
    let after = snapshot(&user.home.join(".config"));
    assert!(
        snapshot_diff(&before, &after).is_empty(),
        "files changed although the keyring refused the token: {:?}",
        snapshot_diff(&before, &after)
    );
}

crate::proofs!(
    keyring_use_stores_the_token_in_the_secret_service_only,
    keyring_exec_substitutes_through_the_daemon_after_a_plain_failure,
    keyring_use_migrates_a_netrc_token,
    keyring_secret_set_status_and_remove,
    file_fallback_without_a_secret_service,
    aws_add_key_feeds_an_mfa_role_session,
    locked_keyring_gives_a_clear_error_and_changes_nothing,
);
