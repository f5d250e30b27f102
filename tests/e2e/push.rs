//! Continuous push (issue 15, "Proof with real parts"): trivial derivations (builder `/bin/sh`,
//! the test bed's daemon has `sandbox = false`) built by the real nix-daemon of each Nix under
//! test while `exec --push` or `watch-store` runs as an unprivileged trusted user, uploaded
//! through the signing proxy to moto (S3, authentication on) or by PUT to nginx with WebDAV
//! behind Basic auth, signed with the cache's key.

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A derivation file below the user's HOME whose output is unique to this run, and its
/// relative path.
fn derivation(user: &TestUser, tag: &str) -> String {
    let rel = format!("drv-{tag}.nix");
    let text = format!(
        "derivation {{ name = \"nixstore-auth-e2e-push-{tag}\"; system = builtins.currentSystem; \
         builder = \"/bin/sh\"; args = [ \"-c\" \"echo {tag} {} > $out\" ]; }}\n",
        unique_tag()
    );
    write_as(user, &rel, &text);
    rel
}

/// Writes a 0600 file below `user`'s HOME, owned by the user (directories 0700).
fn write_as(user: &TestUser, rel: &str, text: &str) {
    let path = user.home.join(rel);
    let mut dir = user.home.clone();
    for part in Path::new(rel).parent().unwrap().components() {
        dir.push(part);
        if !dir.exists() {
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.uid)).unwrap();
        }
    }
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&path, Some(user.uid), Some(user.uid)).unwrap();
}

/// The store path `nix-build` printed last.
fn built_path(out: &Output) -> String {
    out.stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("/nix/store/"))
        .unwrap_or_else(|| panic!("no store path in the output:\n{out}"))
        .trim()
        .to_string()
}

fn hash_of(path: &str) -> &str {
    &path.rsplit('/').next().unwrap()[..32]
}

/// The user's spool entry for `path` in cache `name`.
fn queued(user: &TestUser, name: &str, path: &str) -> bool {
    user.home
        .join(".local/state/nixstore-auth/push")
        .join(name)
        .join("queue")
        .join(path.rsplit('/').next().unwrap())
        .exists()
}

/// Requests in moto's log after byte `from` with `method` on a key for which `pred` holds,
/// answered `status`.
fn moto_requests(
    bed: &Bed,
    from: usize,
    method: &str,
    status: u16,
    pred: impl Fn(&str) -> bool,
) -> usize {
    let log = bed.moto_log();
    let prefix = format!("\"{method} /{}/", bed.bucket);
    log[from.min(log.len())..]
        .lines()
        .filter(|l| {
            let Some((_, req)) = l.split_once(&prefix) else {
                return false;
            };
            let Some((key, rest)) = req.split_once(' ') else {
                return false;
            };
            rest.contains(&format!("\" {status} ")) && pred(key)
        })
        .count()
}

/// The cache's signing key for the user (`keys/cache.sk`, 0600) and its name.
fn user_key(bed: &Bed, tag: &str) -> (String, String) {
    let key = fs::read_to_string(cache_secret_key(bed.e2e, tag)).unwrap();
    bed.write_user_file("keys/cache.sk", &key);
    let name = key.split(':').next().unwrap().to_string();
    (key.trim().to_string(), name)
}

/// `nix store verify` of `path` in a binary cache directory, against `public_key` only: the
/// narinfo's signature and the NAR's hash.
fn verify_signed(e2e: &E2e, dir: &Path, path: &str, public_key: &str) {
    let store = format!("file://{}", dir.display());
    let out = root_nix(
        e2e,
        "nix",
        &[
            "store",
            "verify",
            "--store",
            &store,
            "--trusted-public-keys",
            public_key,
            "--sigs-needed",
            "1",
            path,
        ],
        None,
    );
    out.assert_success("nix store verify of the uploaded path against the cache's public key");
}

/// A copy of what the bucket holds for `path` (narinfo, NAR, nix-cache-info) as a `file://`
/// cache, for [`verify_signed`].
fn mirror(bed: &Bed, path: &str) -> PathBuf {
    let dir = bed.e2e.dir.join(format!("mirror-{}", hash_of(path)));
    fs::create_dir_all(dir.join("nar")).unwrap();
    let narinfo_key = format!("{}.narinfo", hash_of(path));
    let narinfo = bed.boto("get", &[&narinfo_key]);
    narinfo.assert_success("the uploaded narinfo in the bucket");
    let nar = narinfo
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .expect("narinfo URL line")
        .to_string();
    // Raw bytes: Output reads stdout lossily as text.
    let raw = Command::new(venv_bin("python"))
        .arg(&bed.script)
        .args(["get", &bed.moto.url(), &bed.bucket, &nar])
        .env("E2E_KEY_ID", &bed.key_id)
        .env("E2E_SECRET", &bed.secret)
        .output()
        .unwrap();
    fs::write(dir.join(&nar), raw.stdout).unwrap();
    fs::write(dir.join(&narinfo_key), &narinfo.stdout).unwrap();
    fs::write(dir.join("nix-cache-info"), "StoreDir: /nix/store\n").unwrap();
    dir
}

/// The bed with the cache recorded and its signing key recorded by `use --secret-key`.
fn s3_bed_with_key<'a>(e2e: &'a E2e, tag: &str) -> (Bed<'a>, SignedCache, String) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, tag);
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);
    let (_, key_name) = user_key(&bed, tag);
    let out = bed
        .nsa(["use", NAME, "--secret-key", "keys/cache.sk"])
        .run();
    out.assert_success("use --secret-key");
    let config = bed.user.read(".config/nixstore-auth/config.toml");
    assert!(
        config.contains(&format!(
            "secret-key = \"{}\"",
            bed.user.home.join("keys/cache.sk").display()
        )),
        "use did not record the key's path:\n{config}"
    );
    assert!(
        !config.contains(
            &fs::read_to_string(cache_secret_key(e2e, tag)).unwrap()[key_name.len() + 1..][..20]
        ),
        "the key itself is in config.toml"
    );
    (bed, cache, key_name)
}

/// Proof 1: a derivation built by the daemon under `exec --push` is in the bucket when `exec`
/// returns, signed with the cache's key (verified with the public key); deleted locally, `exec
/// -- nix-store -r` substitutes it back through the daemon.
fn exec_push_uploads_what_the_daemon_builds_signed(e2e: &E2e) {
    let (bed, cache, key_name) = s3_bed_with_key(e2e, "p1");
    let drv = derivation(&bed.user, "p1");
    let started = Instant::now();
    let out = bed
        .nsa([
            "-v",
            "exec",
            "--mfa-code",
            MFA_CODE,
            "--push",
            NAME,
            "--",
            "nix-build",
            &drv,
            "--no-out-link",
        ])
        .run();
    out.assert_success("exec --push -- nix-build");
    note(&format!(
        "exec --push -- nix-build: {:?}",
        started.elapsed()
    ));
    let path = built_path(&out);
    let _cleanup = ExtraPaths::guard(e2e, vec![path.clone()]);
    assert!(
        out.stderr.contains(&format!("uploaded {path} to {NAME}")),
        "no line for the uploaded path with -v:\n{out}"
    );
    bed.assert_no_secret("exec --push -v output", &without_nix_progress(&out));
    assert!(!out.all().contains("keys/cache.sk:"), "{out}");
    let narinfo = bed.boto("get", &[&format!("{}.narinfo", hash_of(&path))]);
    narinfo.assert_success("the narinfo in the bucket when exec returned");
    assert!(
        narinfo.stdout.contains(&format!("StorePath: {path}")),
        "{narinfo}"
    );
    assert!(
        narinfo
            .stdout
            .lines()
            .any(|l| l.starts_with(&format!("Sig: {key_name}:"))),
        "not signed by {key_name}:\n{}",
        narinfo.stdout
    );
    assert_eq!(
        bed.bucket_listing()
            .lines()
            .filter(|l| l.contains(".drv"))
            .count(),
        0,
        "a .drv is in the bucket"
    );
    verify_signed(e2e, &mirror(&bed, &path), &path, &cache.public_key);
    assert!(!queued(&bed.user, NAME, &path), "the path is still queued");

    root_nix(e2e, "nix-store", &["--delete", &path], None).assert_success("delete the built path");
    let out = bed.exec(&["nix-store", "-r", &path]);
    out.assert_success("exec -- nix-store -r BUILT");
    assert!(
        root_nix(e2e, "nix-store", &["--check-validity", &path], None).success(),
        "not substituted back:\n{out}"
    );
}

/// Proof 2: a path the cache already has is not uploaded again: substituted from the cache
/// under `exec --push`, it appears in the store, and moto sees no PUT for it.
fn a_path_the_cache_has_is_not_uploaded_again(e2e: &E2e) {
    let (bed, cache, _) = s3_bed_with_key(e2e, "p2");
    let from = bed.moto_log().len();
    let out = bed
        .nsa([
            "-v",
            "exec",
            "--mfa-code",
            MFA_CODE,
            "--push",
            NAME,
            "--",
            "nix-store",
            "-r",
            &cache.store_path,
        ])
        .run();
    out.assert_success("exec --push -- nix-store -r CACHED");
    assert!(cache.is_valid(e2e), "not substituted:\n{out}");
    assert!(
        out.stderr
            .contains(&format!("{NAME} has {} already", cache.store_path)),
        "the path from the cache was not recognised as present:\n{out}"
    );
    let hash = cache.hash().to_string();
    assert_eq!(
        moto_requests(&bed, from, "PUT", 200, |k| k.contains(&hash)),
        0,
        "the cached path was uploaded again:\n{}",
        &bed.moto_log()[from..]
    );
    assert_eq!(
        moto_requests(&bed, from, "PUT", 200, |_| true),
        0,
        "something was uploaded:\n{}",
        &bed.moto_log()[from..]
    );
    // And `push` of the same path says so, uploading nothing.
    let from = bed.moto_log().len();
    let out = bed
        .nsa(["push", NAME, &cache.store_path])
        .env("NIXSTORE_AUTH_MFA_CODE", MFA_CODE)
        .run();
    out.assert_success("push of a path the cache has");
    assert!(out.stderr.contains("1 already in the cache"), "{out}");
    assert_eq!(moto_requests(&bed, from, "PUT", 200, |_| true), 0);
}

/// Proof 3: `watch-store` uploads three derivations built while it runs; after the first
/// upload moto is frozen (SIGSTOP) so that the other two wait in the queue, `watch-store` is
/// killed with SIGKILL, and a new `watch-store` uploads them from the queue first. No path is
/// uploaded twice (moto's log). The signing key comes from the keyring here (`secret set
/// --signing-key-stdin`; the file store of this bed).
fn watch_store_survives_kill_9_with_its_queue(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "p3");
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);
    let key = fs::read_to_string(cache_secret_key(e2e, "p3")).unwrap();
    let out = bed
        .nsa(["secret", "set", NAME, "--signing-key-stdin"])
        .stdin(key.clone())
        .run();
    out.assert_success("secret set --signing-key-stdin");
    assert!(!out.all().contains(key.trim()), "{out}");
    let drvs: Vec<String> = (1..=3)
        .map(|i| derivation(&bed.user, &format!("p3-{i}")))
        .collect();
    let from = bed.moto_log().len();

    let start_watch = |n: u32| {
        let log = e2e.dir.join(format!("watch-store-{n}.log"));
        let cmd = bed
            .nsa(["-v", "watch-store", NAME])
            .env("NIXSTORE_AUTH_MFA_CODE", MFA_CODE)
            .into_command();
        let l = log.clone();
        let service = Service::spawn(
            "watch-store",
            cmd,
            &log,
            Duration::from_secs(60),
            move || {
                fs::read_to_string(&l)
                    .unwrap_or_default()
                    .contains("watching ")
            },
        );
        (service, log)
    };
    let watcher_pid = || {
        processes(|p| p.comm == "nixstore-auth" && proc_uid(p.pid) == Some(bed.user.uid))
            .into_iter()
            .map(|p| p.pid)
            .find(|&p| proc_text(p, "cmdline").contains("watch-store"))
            .expect("the watch-store process")
    };
    let in_bucket = |path: &str| {
        bed.boto("get", &[&format!("{}.narinfo", hash_of(path))])
            .success()
    };
    let build = |drv: &str| {
        let out = bed.cmd("nix-build").args([drv, "--no-out-link"]).run();
        out.assert_success("nix-build");
        built_path(&out)
    };

    let (first_watch, log1) = start_watch(1);
    let p1 = build(&drvs[0]);
    let _cleanup1 = ExtraPaths::guard(e2e, vec![p1.clone()]);
    wait_until(
        "the first path in the bucket",
        Duration::from_secs(60),
        || in_bucket(&p1),
    );

    // moto frozen: uploads hang, the watcher still queues what it sees. The run's moto is
    // shared: the guard thaws it even if this proof fails while it is frozen.
    struct Thaw(i32);
    impl Drop for Thaw {
        fn drop(&mut self) {
            // SAFETY: a signal to the moto this test run started.
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    let moto_pid = bed.moto.pid as i32;
    let thaw = Thaw(moto_pid);
    // SAFETY: signals to a process this test run started.
    unsafe { libc::kill(moto_pid, libc::SIGSTOP) };
    let p2 = build(&drvs[1]);
    let p3 = build(&drvs[2]);
    let _cleanup2 = ExtraPaths::guard(e2e, vec![p2.clone(), p3.clone()]);
    wait_until("both new paths queued", Duration::from_secs(30), || {
        queued(&bed.user, NAME, &p2) && queued(&bed.user, NAME, &p3)
    });
    let pid = watcher_pid();
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_until("watch-store to die", Duration::from_secs(10), || {
        processes(|p| p.pid == pid).is_empty()
    });
    drop(first_watch);
    drop(thaw);
    assert!(
        queued(&bed.user, NAME, &p2) && queued(&bed.user, NAME, &p3),
        "the queue lost paths at kill -9"
    );
    assert!(
        !in_bucket(&p2) && !in_bucket(&p3),
        "uploaded before the kill"
    );

    let (second_watch, log2) = start_watch(2);
    let text2 = fs::read_to_string(&log2).unwrap_or_default();
    assert!(text2.contains("queued earlier go first"), "{text2}");
    wait_until(
        "the queued paths in the bucket",
        Duration::from_secs(90),
        || in_bucket(&p2) && in_bucket(&p3),
    );
    let pid = watcher_pid();
    // Ctrl-C: finishes the (now empty) queue and exits.
    // SAFETY: as above.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    wait_until(
        "watch-store to end after SIGINT",
        Duration::from_secs(30),
        || processes(|p| p.pid == pid).is_empty(),
    );
    drop(second_watch);
    let text2 = fs::read_to_string(&log2).unwrap_or_default();
    assert!(text2.contains("finishing the queue"), "{text2}");
    assert!(
        !queued(&bed.user, NAME, &p2) && !queued(&bed.user, NAME, &p3),
        "{text2}"
    );
    for p in [&p1, &p2, &p3] {
        let h = hash_of(p).to_string();
        assert_eq!(
            moto_requests(&bed, from, "PUT", 200, |k| k == format!("{h}.narinfo")),
            1,
            "{p} was not uploaded exactly once:\n{}\n--- first watch-store ---\n{}\n--- second ---\n{text2}",
            &bed.moto_log()[from..],
            fs::read_to_string(&log1).unwrap_or_default()
        );
    }
    let sig_name = key.split(':').next().unwrap();
    let narinfo = bed.boto("get", &[&format!("{}.narinfo", hash_of(&p3))]);
    assert!(
        narinfo.stdout.contains(&format!("Sig: {sig_name}:")),
        "not signed with the keyring's key:\n{narinfo}"
    );
    let all = format!("{}{text2}", fs::read_to_string(&log1).unwrap_or_default());
    bed.assert_no_secret("watch-store's output", &all);
    assert!(
        !all.contains(key.split(':').nth(1).unwrap().trim()),
        "watch-store shows the key"
    );
}

/// Proof 4: `exec --push` to an HTTPS-style cache (nginx with WebDAV PUT behind Basic auth):
/// the output is there, signed; nginx's log shows the uploads with the login.
fn exec_push_uploads_to_a_webdav_cache_with_the_login(e2e: &E2e) {
    let user = TestUser::create(e2e, "w");
    let _procs = UserProcs(user.uid);
    let token = new_token();
    let cache = SignedCache::create(e2e, "dav");
    let nginx = Nginx::start(
        e2e,
        NginxOptions::new(&cache.dir)
            .basic_auth(LOGIN, &token)
            .dav_put(),
    );
    let _daemon = NixDaemon::start(e2e, &NixConf::new().trusted_user(&user.name));
    let key = fs::read_to_string(cache_secret_key(e2e, "dav")).unwrap();
    write_as(&user, "keys/cache.sk", &key);
    let out = user
        .cmd(&e2e.bin)
        .args([
            "use",
            &nginx.url(),
            "--name",
            "dav",
            "--public-key",
            &cache.public_key,
            "--token-stdin",
            "--login",
            LOGIN,
            "--secret-key",
            "keys/cache.sk",
        ])
        .stdin(format!("{token}\n"))
        .run();
    out.assert_success("use http://... --secret-key");
    let drv = derivation(&user, "p4");
    let from = nginx.access_log().len();
    let out = user
        .cmd(&e2e.bin)
        .args([
            "-v",
            "exec",
            "--push",
            "dav",
            "--",
            "nix-build",
            &drv,
            "--no-out-link",
        ])
        .env("NO_COLOR", "1")
        .run();
    out.assert_success("exec --push dav -- nix-build");
    let path = built_path(&out);
    let _cleanup = ExtraPaths::guard(e2e, vec![path.clone()]);
    assert!(!out.all().contains(&token), "exec shows the token:\n{out}");
    let narinfo_file = cache.dir.join(format!("{}.narinfo", hash_of(&path)));
    let narinfo = fs::read_to_string(&narinfo_file)
        .unwrap_or_else(|e| panic!("{}: {e}\n{out}", narinfo_file.display()));
    let key_name = key.split(':').next().unwrap();
    assert!(narinfo.contains(&format!("Sig: {key_name}:")), "{narinfo}");
    verify_signed(e2e, &cache.dir, &path, &cache.public_key);
    let puts: Vec<AccessEntry> = nginx.access_log()[from..]
        .iter()
        .filter(|e| e.method == "PUT")
        .cloned()
        .collect();
    assert!(
        puts.iter()
            .any(|e| e.uri.ends_with(".narinfo") && (200..300).contains(&e.status)),
        "no accepted narinfo PUT: {puts:?}"
    );
    assert!(
        puts.iter().all(|e| e.user == LOGIN),
        "a PUT without the login: {puts:?}"
    );
}

/// Proof 5: an upload S3 refuses (the role's policy denies `s3:PutObject`): reported with the
/// path and the reason, the path stays queued, reads through the same session still work (CMD
/// substitutes after the refusal, under the same proxy lease), and `--push-strict` makes `exec`
/// exit non-zero; without it `exec` returns CMD's status.
fn a_refused_upload_is_reported_kept_and_fails_only_strict_exec(e2e: &E2e) {
    let (bed, cache, _) = s3_bed_with_key(e2e, "p5");
    let role = bed.role_arn.rsplit('/').next().unwrap();
    bed.boto("deny-put", &[role])
        .assert_success("deny s3:PutObject to the role");
    let drv = derivation(&bed.user, "p5");
    // CMD builds, waits until the proxy has passed S3's refusal on, then reads through the
    // same session.
    let script = format!(
        "set -e; nix-build {drv} --no-out-link > built.txt; \
         for i in $(seq 300); do grep -q 'S3 refused the upload' .cache/nixstore-auth/proxy.log && break; sleep 0.1; done; \
         nix-store -r {}",
        cache.store_path
    );
    let out = bed
        .nsa([
            "-v",
            "exec",
            "--mfa-code",
            MFA_CODE,
            "--push",
            NAME,
            "--push-strict",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .run();
    let path = bed.user.read("built.txt").trim().to_string();
    assert!(path.starts_with("/nix/store/"), "nothing built:\n{out}");
    let _cleanup = ExtraPaths::guard(e2e, vec![path.clone()]);
    out.assert_code(1, "exec --push-strict with a refused upload");
    assert!(
        cache.is_valid(e2e),
        "the read after the refusal failed:\n{out}"
    );
    assert!(
        out.stderr
            .contains(&format!("cannot upload {path} to {NAME}"))
            && out.stderr.contains("403")
            && out.stderr.contains("AccessDenied"),
        "the refusal was not reported with the path and the reason:\n{out}"
    );
    assert!(out.stderr.contains("stay queued"), "{out}");
    assert!(
        queued(&bed.user, NAME, &path),
        "the refused path left the queue"
    );
    bed.assert_no_secret("exec output", &without_nix_progress(&out));
    let log = bed.proxy_log();
    assert!(log.contains("S3 refused the upload"), "{log}");
    assert!(
        !log.contains("S3 refused the AWS session"),
        "the session was blamed:\n{log}"
    );

    // Not strict: the queued path is tried again first, fails again, and exec returns CMD's 0.
    let out = bed
        .nsa(["exec", "--mfa-code", MFA_CODE, "--push", NAME, "--", "true"])
        .run();
    out.assert_success("exec --push without --push-strict");
    assert!(out.stderr.contains("queued by an earlier run"), "{out}");
    assert!(
        out.stderr.contains(&format!("cannot upload {path}")),
        "{out}"
    );
    assert!(queued(&bed.user, NAME, &path));
}

crate::proofs!(
    exec_push_uploads_what_the_daemon_builds_signed,
    a_path_the_cache_has_is_not_uploaded_again,
    watch_store_survives_kill_9_with_its_queue,
    exec_push_uploads_to_a_webdav_cache_with_the_login,
    a_refused_upload_is_reported_kept_and_fails_only_strict_exec,
);
