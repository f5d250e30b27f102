//! End-to-end proof that the signing proxy keeps other local users out (issue 10), each claim
//! checked as another local user would try it, against the real proxy, the real daemon of each
//! Nix under test and moto with authentication on:
//! - another user with the URL gets nothing over `127.0.0.1`, `[::1]` or `[::ffff:127.0.0.1]`:
//!   no narinfo, no NAR (no 307 either), no upload; root (the daemon) reads but cannot write;
//! - a flood of connections, slow headers and refused requests from another user does not stop
//!   the user's own substitution; the proxy's descriptors, memory and log stay bounded;
//! - no file another user can read holds the URL secret or a credential, after `exec` through
//!   the daemon, `push`, and `exec` on a store the user owns (single-user);
//! - a squatted port or a foreign control socket gets a clear error and is sent nothing; a
//!   default port taken at the first start moves once, and the move is remembered.

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The text of a support script (tests/support/py), for a copy owned by a test user.
fn script_text(e2e: &E2e, name: &str) -> String {
    fs::read_to_string(e2e.script(name)).unwrap()
}

/// The proxy's URL for the cache, and its base (`http://127.0.0.1:PORT/SECRET/NAME`).
fn cache_url(bed: &Bed) -> String {
    format!("http://127.0.0.1:{}/{}/{NAME}", bed.port, bed.url_secret())
}

/// `(status, body)` of a curl request as `user` (0: no HTTP answer at all), within 10 s.
fn curl_as(user: &str, extra: &[&str], url: &str) -> (u16, String) {
    curl_with(user, extra, url, 10)
}

/// `url` with its host replaced by `host` (an IPv6 literal in brackets, say).
fn with_host(url: &str, host: &str) -> String {
    url.replacen("127.0.0.1", host, 1)
}

/// A file only `user` can read, holding `text`, in `dir` (made for it).
fn user_file(user: &TestUser, dir: &Path, name: &str, text: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.uid)).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    std::os::unix::fs::chown(&p, Some(user.uid), Some(user.uid)).unwrap();
    p
}

/// The proxy's open descriptors and resident memory (KiB).
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    let rss = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

/// Every secret of the user's session and proxy, for the file searches.
fn needles(bed: &Bed) -> Vec<String> {
    bed.secrets()
}

/// Proofs 1, 2 and 4: another user with the URL gets no answer over any loopback address (no
/// narinfo, no NAR, no 307, no upload), root reads but cannot write, the bucket is unchanged;
/// and after `exec` through the daemon, `push`, and `exec` on a store the user owns, no file
/// another user can read holds the URL secret or a credential, with the user's home at 0755.
fn other_users_get_nothing_from_the_proxy_and_find_no_secret_at_rest(e2e: &E2e) {
    let bed = Bed::new(e2e);
    bed.user.open_home();
    let bob = TestUser::create(e2e, "b");
    let cache = SignedCache::create(e2e, "guard");
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);
    let before = bed.bucket_listing();
    assert!(before.contains(".narinfo"), "{before}");
    let nar = cache_nar(&cache);

    // alice's exec substitutes through the daemon and keeps the proxy up while bob tries.
    let home = bed.user.home.clone();
    let script = format!(
        "nix-store -r {} && touch {h}/ready && while [ ! -e {h}/go ]; do sleep 0.1; done",
        cache.store_path,
        h = home.display()
    );
    let evil = user_file(
        &bob,
        &e2e.dir.join("bob-files"),
        "evil.narinfo",
        "StorePath: x\n",
    );
    let url = cache_url(&bed);
    let narinfo = format!("{url}/{}.narinfo", cache.hash());
    let nar_url = format!("{url}/{nar}");
    let put_url = format!("{url}/bobwashere.narinfo");
    let (out, tries, root_get, root_put) = std::thread::scope(|s| {
        let run = s.spawn(|| bed.exec(&["sh", "-c", &script]));
        wait_until("exec to substitute", Duration::from_secs(120), || {
            home.join("ready").exists() || run.is_finished()
        });
        let mut tries = Vec::new();
        for host in ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]"] {
            for (what, target, extra) in [
                (
                    "GET nix-cache-info",
                    format!("{url}/nix-cache-info"),
                    vec!["-g"],
                ),
                ("GET narinfo", narinfo.clone(), vec!["-g"]),
                ("GET nar", nar_url.clone(), vec!["-g"]),
                (
                    "PUT",
                    put_url.clone(),
                    vec!["-g", "-T", evil.to_str().unwrap()],
                ),
            ] {
                let got = curl_as(&bob.name, &extra, &with_host(&target, host));
                tries.push((format!("{what} over {host}"), got));
            }
        }
        let root_get = curl_as("root", &[], &narinfo);
        let root_put = curl_as("root", &["-T", evil.to_str().unwrap()], &put_url);
        fs::write(home.join("go"), "").unwrap();
        (run.join().unwrap(), tries, root_get, root_put)
    });
    out.assert_success("exec -- nix-store -r, holding the proxy");
    assert!(cache.is_valid(e2e), "not substituted:\n{out}");
    for (what, (code, body)) in &tries {
        assert_eq!(
            (*code, body.as_str()),
            (0, ""),
            "{what} by another user with the URL got an answer"
        );
    }
    assert_eq!(root_get.0, 200, "root (the daemon) reads: {}", root_get.1);
    assert_eq!(
        root_put.0, 403,
        "root (the daemon) must not write: {}",
        root_put.1
    );
    assert_eq!(
        bed.bucket_listing(),
        before,
        "the bucket changed under refused writes"
    );
    let log = bed.proxy_log();
    assert!(
        log.contains(&format!("refused a connection from uid {}", bob.uid)),
        "the proxy did not log the refused user:\n{log}"
    );
    assert!(
        log.contains("uid 0 may only read (403)"),
        "the proxy did not log the refused root write:\n{log}"
    );
    bed.assert_no_secret("the proxy log", &log);

    // At rest, after exec through the daemon.
    let found = readable_files_holding(e2e, &bob, &needles(&bed), &[]);
    assert!(
        found.is_empty(),
        "after exec: bob reads a secret in {found:?}"
    );

    // After push: it uploads in its own process (no `nix copy`), so no Nix client opens the
    // proxy URL and records it in its cache database; the secret must be nowhere bob can read.
    let key = fs::read_to_string(cache_secret_key(e2e, "guard")).unwrap();
    bed.write_user_file("keys/cache.sk", &key);
    let new = add_paths(e2e, "guardpush", 1).remove(0);
    bed.nsa(["push", NAME, &new, "--secret-key", "keys/cache.sk"])
        .run()
        .assert_success("push");
    let nix_cache = bed.user.home.join(".cache/nix");
    // Nix 2.8 names it binary-cache-v6.sqlite, 2.34 binary-cache-v7.sqlite.
    let db = if e2e.on("2.8") {
        "binary-cache-v6.sqlite"
    } else {
        "binary-cache-v7.sqlite"
    };
    assert!(
        !nix_cache.join(db).exists(),
        "push opened the proxy URL through a Nix client ({db} exists): it uploads in-process"
    );
    let found = readable_files_holding(e2e, &bob, &needles(&bed), &[]);
    assert!(
        found.is_empty(),
        "after push: bob reads a secret in {found:?}"
    );

    // A store the user owns: the client is the one that downloads (single-user).
    let store = bed.user.home.join("store");
    let own = bed
        .cmd(&e2e.bin)
        .args([
            "exec",
            "--mfa-code",
            MFA_CODE,
            "--",
            "nix-store",
            "-r",
            &cache.store_path,
        ])
        .env("NIX_REMOTE", format!("local?root={}", store.display()))
        .run();
    own.assert_success("exec on a store the user owns");
    assert!(
        store
            .join(cache.store_path.trim_start_matches('/'))
            .exists(),
        "not substituted into the user's own store:\n{own}"
    );
    let found = readable_files_holding(e2e, &bob, &needles(&bed), &[]);
    assert!(
        found.is_empty(),
        "after a single-user exec: bob reads a secret in {found:?}"
    );
}

/// The key of the cache's NAR (`nar/...`), from its narinfo.
fn cache_nar(cache: &SignedCache) -> String {
    let narinfo = fs::read_to_string(cache.dir.join(format!("{}.narinfo", cache.hash()))).unwrap();
    narinfo
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .expect("a URL line in the narinfo")
        .to_string()
}

/// Proof 3: while another user opens 2,000 connections and more in a loop (each closed at once,
/// none answered), sends slow headers and floods refused requests, the user's own
/// `exec -- nix-store -r` of 20 paths succeeds within twice its time without the flood; the
/// proxy's descriptors, memory and log stay bounded; a slow client of the user's own is closed
/// after the header timeout.
fn a_flood_from_another_user_does_not_stop_the_users_substitution(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let bob = TestUser::create(e2e, "b");
    let cache = SignedCache::create(e2e, "flood");
    bed.upload(&cache.dir);
    let sk = cache_secret_key(e2e, "flood");
    let quiet = ExtraPaths::create(e2e, "quiet", 20, &sk);
    let loud = ExtraPaths::create(e2e, "loud", 20, &sk);
    bed.upload(&quiet.dir);
    bed.upload(&loud.dir);
    bed.use_cache(&cache.public_key);
    bed.exec(&["nix-store", "-r", &cache.store_path])
        .assert_success("a first exec (the daemon learns the cache)");

    let restore = |paths: &ExtraPaths| {
        let mut cmd = vec!["nix-store", "-r"];
        cmd.extend(paths.paths.iter().map(String::as_str));
        let started = Instant::now();
        let out = bed.exec(&cmd);
        (out, started.elapsed())
    };
    let (out, quiet_took) = restore(&quiet);
    out.assert_success("20 paths without a flood");
    assert_eq!(quiet.valid(e2e), 20);

    let bob_dir = e2e.dir.join("bob-flood");
    let script = user_file(&bob, &bob_dir, "flood.py", &script_text(e2e, "flood.py"));
    let stop = bob_dir.join("stop");
    let slow = user_file(
        &bob,
        &e2e.dir.join("alice-slow"),
        "slow.py",
        &script_text(e2e, "slow_client.py"),
    );
    let secret_path = format!("/{}/{NAME}/nix-cache-info", bed.url_secret());
    let sampler_stop = std::sync::atomic::AtomicBool::new(false);
    let held = bed.user.home.join("held");
    let release = bed.user.home.join("release");
    let slow_out = bed.user.home.join("slow.out");
    let holder_script = format!(
        "touch {held}; /usr/bin/python3 {slow} {port} > {out}; while [ ! -e {release} ]; do sleep 0.1; done",
        held = held.display(),
        slow = slow.display(),
        port = bed.port,
        out = slow_out.display(),
        release = release.display()
    );
    let (out, loud_took, flood, samples, holder) = std::thread::scope(|s| {
        // alice's own command keeps the proxy up for the whole flood, and runs her slow client.
        let holder = s.spawn(|| bed.exec(&["sh", "-c", &holder_script]));
        wait_until("the holding exec to start", Duration::from_secs(60), || {
            held.exists() || holder.is_finished()
        });
        let flood = s.spawn(|| {
            bob.cmd("/usr/bin/python3")
                .arg(&script)
                .args([
                    &bed.port.to_string(),
                    "2000",
                    "120",
                    stop.to_str().unwrap(),
                    &secret_path,
                ])
                .timeout(Duration::from_secs(300))
                .run()
        });
        // Let the flood get going, then restore the other 20 paths under it.
        let going = bob_dir.join("stop.going");
        wait_until("the flood to get going", Duration::from_secs(60), || {
            going.exists() || flood.is_finished()
        });
        let uid = bed.user.uid;
        let sampler_stop = &sampler_stop;
        let sampler = s.spawn(move || {
            let mut samples = Vec::new();
            while !sampler_stop.load(std::sync::atomic::Ordering::SeqCst) {
                for pid in proxy_pids(uid) {
                    samples.push(fds_and_rss(pid));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        let (out, took) = restore(&loud);
        // The flood's first 2,000 connections run to the end, then it stops.
        fs::write(&stop, "").unwrap();
        let _ = std::os::unix::fs::chown(&stop, Some(bob.uid), None);
        let flood = flood.join().unwrap();
        sampler_stop.store(true, std::sync::atomic::Ordering::SeqCst);
        wait_until("the slow client to end", Duration::from_secs(60), || {
            !fs::read_to_string(&slow_out)
                .unwrap_or_default()
                .trim()
                .is_empty()
        });
        fs::write(&release, "").unwrap();
        (
            out,
            took,
            flood,
            sampler.join().unwrap(),
            holder.join().unwrap(),
        )
    });
    out.assert_success("20 paths under a flood from another user");
    assert_eq!(loud.valid(e2e), 20, "not all paths substituted:\n{out}");
    note(&format!(
        "20 paths: {quiet_took:?} without a flood, {loud_took:?} under it"
    ));
    let budget = quiet_took.max(Duration::from_secs(2)) * 2;
    assert!(
        loud_took <= budget,
        "under the flood 20 paths took {loud_took:?}, more than twice {quiet_took:?}"
    );
    flood.assert_success("the flood script");
    let st: serde_json::Value = serde_json::from_str(flood.stdout.trim()).unwrap();
    note(&format!("flood: {st}"));
    let n = |k: &str| st[k].as_u64().unwrap();
    assert!(n("opened") >= 2000, "the flood opened too few: {st}");
    assert_eq!(n("answered"), 0, "the proxy answered another user: {st}");
    assert_eq!(n("held"), 0, "another user held a connection open: {st}");
    assert_eq!(n("closed_at_once"), n("opened"), "{st}");
    assert!(n("requests") >= 200, "{st}");

    let max_fds = samples.iter().map(|s| s.0).max().unwrap_or(0);
    let max_rss = samples.iter().map(|s| s.1).max().unwrap_or(0);
    note(&format!(
        "proxy under the flood: at most {max_fds} descriptors, {max_rss} KiB resident ({} samples)",
        samples.len()
    ));
    assert!(!samples.is_empty(), "no sample of the proxy was taken");
    assert!(max_fds < 200, "the proxy held {max_fds} descriptors");
    assert!(max_rss < 100 * 1024, "the proxy grew to {max_rss} KiB");

    holder.assert_success("the holding exec with alice's slow client");
    let closed_after: f64 = fs::read_to_string(&slow_out)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (10.0..30.0).contains(&closed_after),
        "a client that never finished its request head was closed after {closed_after} s"
    );

    let log_len = fs::metadata(bed.user.home.join(".cache/nixstore-auth/proxy.log"))
        .map(|m| m.len())
        .unwrap_or(0);
    let log = bed.proxy_log();
    let refusals = log
        .lines()
        .filter(|l| l.contains("refused a connection"))
        .count();
    note(&format!(
        "proxy.log: {log_len} bytes, {refusals} refusal lines for {} refused connections",
        n("opened")
    ));
    assert!(log_len < 4 << 20, "proxy.log grew to {log_len} bytes");
    // One line per 10 s at most (with the count of those not logged since).
    assert!(
        (1..50).contains(&refusals),
        "refusals are not rate-limited in the log ({refusals} lines)"
    );
}

/// Proof 6: a default port taken at the first start moves to a free one, which is remembered
/// and used by the next command; a squatter on the remembered port, or a foreign control
/// socket, gets a clear error and nothing sent (the squatter's log stays empty); a runtime
/// directory another user made first is refused.
fn squatted_ports_and_foreign_sockets_get_a_clear_error_and_nothing(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let bob = TestUser::create(e2e, "b");
    let cache = SignedCache::create(e2e, "squat");
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);
    // No `[proxy] port` (the recorded cache stays): the proxy picks its own.
    let config = bed.user.read(".config/nixstore-auth/config.toml");
    let without_port: String = config
        .lines()
        .filter(|l| !l.trim_start().starts_with("port ="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without_port, config, "no port line in {config}");
    bed.write_user_file(".config/nixstore-auth/config.toml", &without_port);
    let bob_dir = e2e.dir.join("bob-squat");
    let squat = user_file(&bob, &bob_dir, "squat.py", &script_text(e2e, "squat.py"));
    let squatter = |kind: &str, at: &str, log: &Path| {
        let cmd = bob
            .cmd("/usr/bin/python3")
            .arg(&squat)
            .args([kind, at])
            .arg(log)
            .into_command();
        let ready = PathBuf::from(format!("{}.ready", log.display()));
        let out = PathBuf::from(format!("{}.out", log.display()));
        Service::spawn(
            &format!("squatter-{kind}"),
            cmd,
            &out,
            Duration::from_secs(10),
            || ready.exists(),
        )
    };
    let default = default_port(bed.user.uid);
    let state = bed.user.home.join(".local/state/nixstore-auth/proxy-port");

    // 1. The default port is taken at the first start: another port, remembered.
    let log1 = bob_dir.join("default.log");
    let held = squatter("tcp", &default.to_string(), &log1);
    let out = bed.exec(&["nix-store", "-r", &cache.store_path]);
    out.assert_success("exec with the default port taken");
    assert!(cache.is_valid(e2e));
    let remembered: u16 = fs::read_to_string(&state)
        .unwrap_or_else(|e| panic!("no remembered port in {}: {e}", state.display()))
        .trim()
        .parse()
        .unwrap();
    assert_ne!(remembered, default);
    assert_eq!(
        fs::read_to_string(&log1).unwrap_or_default(),
        "",
        "the squatter on the default port got something"
    );
    drop(held);
    bed.assert_proxy_exits();
    cache.delete_local(e2e);
    // The next command keeps the remembered port, although the default is free again.
    let out = bed.exec(&["nix-store", "-r", &cache.store_path]);
    out.assert_success("exec on the remembered port");
    assert!(
        out.stderr
            .contains(&format!("proxy pid {}", proxy_pid_in(&out)))
            && out.stderr.contains(&format!("127.0.0.1:{remembered}")),
        "the next command did not use the remembered port {remembered}:\n{out}"
    );
    bed.assert_proxy_exits();
    cache.delete_local(e2e);

    // 2. Someone squats the remembered port: a clear error, nothing sent, no silent move.
    let log2 = bob_dir.join("remembered.log");
    let held = squatter("tcp", &remembered.to_string(), &log2);
    let out = bed.exec(&["nix-store", "-r", &cache.store_path]);
    out.assert_failure("exec with the remembered port squatted");
    assert!(
        out.stderr.contains(&format!("port {remembered}"))
            && out.stderr.contains("in use by another program")
            && out.stderr.contains("nothing was sent"),
        "no clear error for the squatted port:\n{out}"
    );
    assert_eq!(
        fs::read_to_string(&state).unwrap().trim(),
        remembered.to_string()
    );
    assert_eq!(
        fs::read_to_string(&log2).unwrap_or_default(),
        "",
        "the squatter got something"
    );
    assert!(!cache.is_valid(e2e));
    drop(held);

    // 3. A control socket served by another user in the user's runtime directory.
    let rundir = bed.runtime_dir().join("nixstore-auth");
    fs::create_dir_all(&rundir).unwrap();
    std::os::unix::fs::chown(&rundir, Some(bed.user.uid), Some(bed.user.uid)).unwrap();
    fs::set_permissions(&rundir, fs::Permissions::from_mode(0o700)).unwrap();
    let sock_at = bob_dir.join("s");
    let log3 = bob_dir.join("socket.log");
    let held = squatter("unix", sock_at.to_str().unwrap(), &log3);
    fs::rename(&sock_at, rundir.join("proxy.sock")).unwrap();
    let out = bed.exec(&["nix-store", "-r", &cache.store_path]);
    out.assert_failure("exec with a foreign control socket");
    assert!(
        out.stderr.contains(&format!("served by uid {}", bob.uid))
            && out.stderr.contains("nothing was sent"),
        "no clear error for the foreign socket:\n{out}"
    );
    let got = fs::read_to_string(&log3).unwrap_or_default();
    assert!(
        !got.contains("bytes"),
        "the foreign socket was sent something: {got:?}"
    );
    drop(held);
    let _ = fs::remove_file(rundir.join("proxy.sock"));

    // 4. Without XDG_RUNTIME_DIR the private directory is /tmp/nixstore-auth-UID: made first by
    // another user, it is refused.
    let tmpdir = PathBuf::from(format!("/tmp/nixstore-auth-{}", bed.user.uid));
    let _ = fs::remove_dir_all(&tmpdir);
    fs::create_dir(&tmpdir).unwrap();
    let _cleanup = RemoveDirOnDrop(tmpdir.clone());
    std::os::unix::fs::chown(&tmpdir, Some(bob.uid), Some(bob.uid)).unwrap();
    let mut cmd = bed.user.cmd(&e2e.bin).args([
        "exec",
        "--mfa-code",
        MFA_CODE,
        "--",
        "nix-store",
        "-r",
        &cache.store_path,
    ]);
    for (k, v) in bed.env() {
        if k != "XDG_RUNTIME_DIR" {
            cmd = cmd.env(k, v);
        }
    }
    let out = cmd.run();
    out.assert_failure("exec with a runtime directory made by another user");
    assert!(
        out.stderr.contains(&tmpdir.display().to_string())
            && out.stderr.contains(&format!("belongs to uid {}", bob.uid)),
        "no clear error for the foreign runtime directory:\n{out}"
    );
}

/// The proxy's pid as `exec -v` reports it ("proxy pid N on 127.0.0.1:PORT").
fn proxy_pid_in(out: &Output) -> String {
    out.stderr
        .split("proxy pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("?")
        .to_string()
}

/// The default port for a uid, as the tool computes it.
fn default_port(uid: u32) -> u16 {
    20000 + (uid % 10000) as u16
}

struct RemoveDirOnDrop(PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

crate::proofs!(
    other_users_get_nothing_from_the_proxy_and_find_no_secret_at_rest,
    a_flood_from_another_user_does_not_stop_the_users_substitution,
    squatted_ports_and_foreign_sockets_get_a_clear_error_and_nothing,
);
