//! Private S3 caches work through the real multi-user nix-daemon of each Nix under test (issue 4,
//! "Proof with real parts"): Nix 2.8's daemon (which cannot open `s3://` at all) and Debian's
//! 2.34 (which opens it but cannot sign), moto as S3 and
//! STS with authentication on (proven with a wrong secret), a trusted unprivileged user whose
//! `~/.aws/config` has a role profile with `mfa_serial` over a source profile holding the moto
//! IAM user's keys, and a signed cache uploaded to the bucket. `nixstore-auth exec` resolves the
//! session (AssumeRole with an MFA code), starts the loopback signing proxy and forwards its URL
//! to the daemon; `push` uploads through it.

use crate::support::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Proof 1 and 2: `use s3://...` then `exec -- nix-store -r PATH` substitutes through the daemon
/// (moto served the narinfo and the NAR to signed requests), the same without `exec` fails, and
/// a script under `exec` gets the settings through `NIX_CONFIG`. No secret shows in `-v` output
/// or in the child's argv.
fn exec_substitutes_from_private_s3_through_the_daemon(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "s3");
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);

    // Without exec: the daemon knows no such cache, and Nix cannot use the private s3:// URL
    // itself. The difference between versions: Nix 2.8 has no S3 store at all; Debian's 2.34
    // opens s3:// but cannot sign (no AWS runtime in its build), so the private bucket
    // refuses it.
    let out = bed.cmd("nix-store").args(["-r", &cache.store_path]).run();
    out.assert_failure("nix-store -r without exec");
    let out = bed
        .cmd("nix-store")
        .args(["-r", &cache.store_path, "--option", "extra-substituters"])
        .arg(&bed.url)
        .run();
    out.assert_failure("nix-store -r with the s3:// URL as a substituter");
    if e2e.on("2.8") {
        assert!(
            out.stderr
                .contains("don't know how to open Nix store 's3://"),
            "{out}"
        );
    } else {
        assert!(
            !out.stderr.contains("don't know how to open Nix store"),
            "Nix {} should open s3:// stores:\n{out}",
            e2e.nix.id
        );
    }
    assert!(!cache.is_valid(e2e));

    let moto_from = bed.moto_log().len();
    let started = Instant::now();
    let out = bed.exec(&["nix-store", "-r", &cache.store_path]);
    out.assert_success("exec -- nix-store -r");
    note(&format!("exec -- nix-store -r: {:?}", started.elapsed()));
    assert!(cache.is_valid(e2e), "not substituted:\n{out}");
    bed.assert_no_secret("exec -v output", &without_nix_progress(&out));
    let narinfo = format!("{}.narinfo", cache.hash());
    assert_eq!(
        bed.moto_gets(moto_from, |k| k == narinfo),
        1,
        "moto did not serve {narinfo} once to a signed GET:\n{}",
        bed.moto_log()
    );
    assert!(
        bed.moto_gets(moto_from, |k| k.starts_with("nar/")) >= 1,
        "moto did not serve the NAR:\n{}",
        bed.moto_log()
    );
    // The same object without a signature: moto refuses it (so the 200s above were signed).
    let (code, _) = curl_status(&format!("{}/{}/{narinfo}", bed.moto.url(), bed.bucket));
    assert_eq!(code, 403, "moto served an unsigned request");

    // Through a script: no --option reaches sh, only NIX_CONFIG does.
    cache.delete_local(e2e);
    let script = format!(
        "tr '\\0' ' ' < /proc/$$/cmdline; echo; \
         case \"$NIX_CONFIG\" in *narinfo-cache-negative-ttl*) echo NIX_CONFIG-forwarded;; esac; \
         nix-store -r {}",
        cache.store_path
    );
    let out = bed.exec(&["sh", "-c", &script]);
    out.assert_success("exec -- sh -c 'nix-store -r PATH'");
    assert!(
        cache.is_valid(e2e),
        "not substituted through NIX_CONFIG:\n{out}"
    );
    assert!(out.stdout.contains("NIX_CONFIG-forwarded"), "{out}");
    let argv = out.stdout.lines().next().unwrap();
    assert!(
        argv.starts_with("sh -c ") && !argv.contains("--option"),
        "CMD's argv was changed: {argv}"
    );
    bed.assert_no_secret(
        "the child's /proc/PID/cmdline and output",
        &without_nix_progress(&out),
    );
}

/// NARs by redirect: where S3 takes presigned URLs, the proxy answers a NAR with a 307 to one
/// and the daemon's Nix downloads it from S3 itself, so NAR bytes never pass through the proxy;
/// with `redirect-nars = false` the proxy streams them. moto checks no presigned URL with
/// authentication on (it answers them 500, and the tests above prove that the proxy then
/// streams), so this bed runs moto with authentication off; that the signatures are right is
/// proven against AWS's documented example in the unit tests (proxy::sign).
fn nars_bypass_the_proxy_by_presigned_redirect_where_s3_takes_them(e2e: &E2e) {
    let bed = Bed::with_options(e2e, true, false);
    let cache = SignedCache::create(e2e, "s3r");
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);

    let presigned = |q: &str| q.contains("X-Amz-Signature=") && q.contains("X-Amz-Expires=");
    let from = bed.moto_log().len();
    // `proxy status` while the lease holds tells which way the NARs went.
    let restore_then_status = format!(
        "nix-store -r {} && {} proxy status",
        cache.store_path,
        bed.e2e.bin.display()
    );
    let out = bed.exec(&["sh", "-c", &restore_then_status]);
    out.assert_success("exec -- nix-store -r (NAR by redirect)");
    assert!(out.stdout.contains("NARs by presigned redirect"), "{out}");
    assert!(cache.is_valid(e2e), "not substituted:\n{out}");
    assert!(
        bed.moto_gets(from, |k| k.starts_with("nar/") && presigned(k)) >= 1,
        "the NAR was not fetched from moto with a presigned URL:\n{}",
        bed.moto_log()
    );
    assert_eq!(
        bed.moto_gets(from, |k| k.starts_with("nar/") && !presigned(k)),
        0,
        "the proxy fetched the NAR itself:\n{}",
        bed.moto_log()
    );
    let log = bed.proxy_log();
    assert!(log.contains("NAR downloads go straight to S3"), "{log}");
    assert!(log.contains("307 to a presigned S3 URL"), "{log}");
    assert!(
        !log.contains("X-Amz-Signature"),
        "the proxy logged a presigned URL:\n{log}"
    );
    bed.assert_no_secret("exec -v output", &without_nix_progress(&out));

    // Switched off: the same NAR streams through the proxy, signed in headers.
    bed.nsa(["proxy", "stop"])
        .run()
        .assert_success("proxy stop");
    let config = bed.user.read(".config/nixstore-auth/config.toml");
    let port_line = format!("port = {}\n", bed.port);
    assert!(config.contains(&port_line), "{config}");
    bed.write_user_file(
        ".config/nixstore-auth/config.toml",
        &config.replace(&port_line, &format!("{port_line}redirect-nars = false\n")),
    );
    cache.delete_local(e2e);
    let from = bed.moto_log().len();
    let out = bed.exec(&["sh", "-c", &restore_then_status]);
    assert!(
        out.success(),
        "exec -- nix-store -r (NAR streamed) failed:\n{out}\nproxy log:\n{}\nmoto log:\n{}",
        bed.proxy_log(),
        &bed.moto_log()[from..]
    );
    assert!(cache.is_valid(e2e), "not substituted:\n{out}");
    assert!(out.stdout.contains("NARs streamed"), "{out}");
    assert!(
        bed.moto_gets(from, |k| k.starts_with("nar/") && !presigned(k)) >= 1,
        "the proxy did not stream the NAR:\n{}",
        bed.moto_log()
    );
    assert_eq!(
        bed.moto_gets(from, |k| k.starts_with("nar/") && presigned(k)),
        0,
        "a presigned URL was used with redirect-nars = false:\n{}",
        bed.moto_log()
    );
}

/// Proof 3: `push CACHE PATH --secret-key SK` uploads a new path through the proxy, signed (its
/// narinfo in the bucket has a `Sig:` line by that key); deleted locally, `exec` substitutes it
/// back through the daemon.
fn push_uploads_a_signed_path_that_exec_substitutes_back(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "push");
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);

    // The signing key, readable by the user only (nix copy signs in the user's client).
    let key = fs::read_to_string(cache_secret_key(e2e, "push")).unwrap();
    let key_name = key.split(':').next().unwrap().to_string();
    bed.write_user_file("keys/cache.sk", &key);
    let new = add_paths(e2e, "pushed", 1).remove(0);
    let _cleanup = ExtraPaths::guard(e2e, vec![new.clone()]);
    let hash = &new.rsplit('/').next().unwrap()[..32];
    let narinfo_key = format!("{hash}.narinfo");
    assert!(
        !bed.boto("get", &[&narinfo_key]).success(),
        "the path is in the bucket before the push"
    );

    let started = Instant::now();
    let out = bed
        .nsa(["-v", "push", NAME, &new, "--secret-key", "keys/cache.sk"])
        .env("NIXSTORE_AUTH_MFA_CODE", MFA_CODE)
        .run();
    out.assert_success("push");
    note(&format!("push of one path: {:?}", started.elapsed()));
    assert!(!out.all().contains(key.trim()), "push shows the secret key");
    bed.assert_no_secret("push -v output", &without_nix_progress(&out));

    let narinfo = bed.boto("get", &[&narinfo_key]);
    narinfo.assert_success("the pushed narinfo in the bucket");
    assert!(
        narinfo.stdout.contains(&format!("StorePath: {new}")),
        "{narinfo}"
    );
    assert!(
        narinfo
            .stdout
            .lines()
            .any(|l| l.starts_with(&format!("Sig: {key_name}:"))),
        "the pushed narinfo is not signed by {key_name}:\n{}",
        narinfo.stdout
    );
    let nar = narinfo
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .expect("narinfo URL line")
        .to_string();
    bed.boto("get", &[&nar])
        .assert_success("the pushed NAR in the bucket");

    // Gone locally; exec brings it back from the bucket, through the daemon, checked against
    // the public key that `use` recorded.
    root_nix(e2e, "nix-store", &["--delete", &new], None).assert_success("delete the pushed path");
    let out = bed.exec(&["nix-store", "-r", &new]);
    out.assert_success("exec -- nix-store -r PUSHED");
    assert!(
        root_nix(e2e, "nix-store", &["--check-validity", &new], None).success(),
        "the pushed path was not substituted back:\n{out}"
    );
}

/// Proof 4: with the cached session's keys refused by S3, the proxy answers 503 (Nix reports
/// that status) and `exec` fails naming the credential problem; the Nix process's argv holds no
/// secret while its environment carries the URL. After `login`, the same path at the same URL
/// substitutes at once (the forwarded negative TTL keeps no stale miss).
fn refused_session_gives_503_then_login_fixes_it_at_the_same_url(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "login");
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);
    // A first success: the daemon now knows the cache (and would remember misses).
    bed.exec(&["nix-store", "-r", &cache.store_path])
        .assert_success("first exec");
    cache.delete_local(e2e);
    let url_secret = bed.url_secret();
    let good = bed.secrets();

    // The cached session now holds a wrong secret key (as if revoked), with a later expiry so
    // that the running proxy takes it as the fresher session.
    let (path, mut session) = bed.session_entry();
    session["secret_access_key"] = "wrong-secret-key-wrong-secret-key-0123".into();
    session["expiration"] = (session["expiration"].as_i64().unwrap() + 600).into();
    fs::write(&path, session.to_string()).unwrap();

    let uid = bed.user.uid;
    let (out, nix_argv, nix_env) = std::thread::scope(|s| {
        let run = s.spawn(|| bed.exec(&["nix-store", "-r", &cache.store_path]));
        // Catch the Nix process while it retries the 503s (about 4 s).
        let mut seen = None;
        while !run.is_finished() && seen.is_none() {
            seen = user_pids(uid)
                .into_iter()
                .find(|&p| proc_text(p, "comm").trim() == "nix-store")
                .map(|p| (proc_text(p, "cmdline"), proc_text(p, "environ")))
                .filter(|(argv, _)| !argv.is_empty());
            std::thread::sleep(Duration::from_millis(20));
        }
        let (argv, env) = seen.expect("never saw the nix-store process run");
        (run.join().unwrap(), argv, env)
    });
    out.assert_failure("exec with a refused session");
    assert!(!cache.is_valid(e2e));
    assert!(
        out.stderr.contains("HTTP error 503"),
        "Nix did not see a 503 from the proxy:\n{out}"
    );
    for code in ["HTTP error 401", "HTTP error 403", "HTTP error 404"] {
        assert!(!out.stderr.contains(code), "Nix saw {code}:\n{out}");
    }
    assert!(
        out.stderr.contains("could not use your AWS session")
            && out.stderr.contains("nixstore-auth login"),
        "exec did not name the credential problem:\n{out}"
    );
    let log = bed.proxy_log();
    assert!(
        log.contains("S3 refused the AWS session") && log.contains("SignatureDoesNotMatch"),
        "proxy log:\n{log}"
    );
    assert!(
        nix_argv.contains("--option narinfo-cache-negative-ttl 0"),
        "non-secret settings as --option: {nix_argv}"
    );
    for s in &good {
        assert!(
            !nix_argv.contains(s.as_str()),
            "a secret is in nix-store's argv"
        );
    }
    assert!(!nix_argv.contains("wrong-secret-key"));
    assert!(
        nix_env.contains("NIX_CONFIG=") && nix_env.contains(&url_secret),
        "the proxy URL did not reach nix-store through NIX_CONFIG"
    );

    // After a run that ended in 503, another local user finds no secret in a file, even with
    // the user's home at 0755.
    bed.user.open_home();
    let bob = TestUser::create(e2e, "b");
    let found = readable_files_holding(e2e, &bob, &good, &[]);
    assert!(
        found.is_empty(),
        "after a 503 run: bob reads a secret in {found:?}"
    );

    // login replaces the cached session; the same stable URL now works at once.
    let out = bed.nsa(["login", NAME, "--mfa-code", MFA_CODE]).run();
    out.assert_success("login");
    assert!(out.stdout.contains("cache-reader"), "{out}");
    bed.assert_no_secret("login output", &out.all());
    let started = Instant::now();
    let out = bed.exec(&["nix-store", "-r", &cache.store_path]);
    let took = started.elapsed();
    out.assert_success("exec after login");
    assert!(cache.is_valid(e2e));
    assert!(
        took < Duration::from_secs(3),
        "substitution after login took {took:?}: Nix retried or remembered a miss\n{out}"
    );
    note(&format!("exec after login: {took:?}"));
    assert_eq!(bed.url_secret(), url_secret, "the URL changed");
    assert!(
        out.stderr.contains(&format!(
            "http://127.0.0.1:{}/{url_secret}/{NAME}",
            bed.port
        )),
        "not substituted from the same stable URL:\n{out}"
    );
}

/// Proof 5: without the URL secret the proxy answers 401; two `exec`s at once share one proxy
/// and both succeed; after the last one ends and the grace period passes, no proxy remains.
fn proxy_is_private_shared_and_exits_when_idle(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "share");
    bed.upload(&cache.dir);
    let two = ExtraPaths::create(e2e, "two", 2, &cache_secret_key(e2e, "share"));
    bed.upload(&two.dir);
    bed.use_cache(&cache.public_key);
    // A first use of the cache through the daemon. Nix 2.8 has a race when two of its workers
    // register a binary cache they have never seen at the same moment: one fails with
    // `executing SQLite statement 'insert or replace into NARs...': constraint failed`
    // (NixOS/nix#3898, fixed upstream by NixOS/nix#7489). Seen here with two concurrent
    // first execs; a daemon that knows the cache (as after any earlier exec) is not affected.
    bed.exec(&["nix-store", "-r", &cache.store_path])
        .assert_success("a first exec");

    let home = bed.user.home.clone();
    let uid = bed.user.uid;
    let (a, b, pids, status, probes) = std::thread::scope(|s| {
        let job = |i: usize| {
            let script = format!(
                "touch {home}/started-{i}; \
                 while [ ! -e {home}/go ]; do sleep 0.1; done; \
                 nix-store -r {}",
                two.paths[i],
                home = home.display()
            );
            let bed = &bed;
            s.spawn(move || bed.exec(&["sh", "-c", &script]))
        };
        let a = job(0);
        let b = job(1);
        wait_until("both execs to start CMD", Duration::from_secs(60), || {
            home.join("started-0").exists() && home.join("started-1").exists()
        });
        let pids = proxy_pids(uid);
        let status = bed.nsa(["proxy", "status"]).run();
        let secret = bed.url_secret();
        let base = format!("http://127.0.0.1:{}", bed.port);
        let probes = [
            format!("{base}/{NAME}/nix-cache-info"),
            format!("{base}/{}/{NAME}/nix-cache-info", "0".repeat(secret.len())),
            format!(
                "{base}/{}/{NAME}/nix-cache-info",
                &secret[..secret.len() - 1]
            ),
            format!("{base}/{secret}/{NAME}/nix-cache-info"),
        ]
        .map(|u| curl_status(&u));
        // The right URL from another local user (a leaked log line): refused by peer uid.
        let foreign = curl_status_as("nobody", &format!("{base}/{secret}/{NAME}/nix-cache-info"));
        fs::write(home.join("go"), "").unwrap();
        (
            a.join().unwrap(),
            b.join().unwrap(),
            pids,
            status,
            (probes, foreign),
        )
    });
    a.assert_success("first concurrent exec");
    b.assert_success("second concurrent exec");
    assert_eq!(two.valid(e2e), 2, "both paths substituted");
    assert_eq!(pids.len(), 1, "one proxy for both execs: {pids:?}");
    status.assert_success("proxy status");
    assert!(
        status
            .stdout
            .contains(&format!("running, pid {}, 2 client(s)", pids[0])),
        "{status}"
    );
    let (probes, foreign) = probes;
    // Another local user is closed at connect: no HTTP answer at all, not even a 401.
    assert_eq!(
        foreign,
        (0, String::new()),
        "another user with the right URL got an answer"
    );
    assert!(
        bed.proxy_log().contains("refused a connection from uid"),
        "the proxy did not log the refused user:\n{}",
        bed.proxy_log()
    );
    for (i, (code, body)) in probes[..3].iter().enumerate() {
        assert_eq!(*code, 401, "request {i} without the right secret: {body}");
    }
    assert_eq!(probes[3].0, 200, "the right secret: {}", probes[3].1);
    bed.assert_no_secret("the 401 answers", &format!("{probes:?}"));
    for out in [&a, &b] {
        assert!(
            out.stderr.contains(&format!("proxy pid {}", pids[0])),
            "{out}"
        );
    }

    let ended = Instant::now();
    bed.assert_proxy_exits();
    note(&format!(
        "proxy gone {:?} after the last exec (grace {GRACE_SECS} s)",
        ended.elapsed()
    ));
    assert!(
        ended.elapsed() >= Duration::from_secs(GRACE_SECS) - Duration::from_millis(500),
        "the proxy exited before its grace period"
    );
}

/// Proof 5, Ctrl-C: at a real terminal (tmux), Ctrl-C during `exec -- sh -c '...sleep 60'` ends
/// CMD and `exec` with status 130 (sent once, to the foreground group), and nothing stays
/// behind: no CMD, no proxy after the grace period, nothing in the runtime directory but the
/// proxy's empty lock files.
fn ctrl_c_at_a_terminal_ends_cmd_and_exec_with_130(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "ctrlc");
    bed.upload(&cache.dir);
    bed.use_cache(&cache.public_key);

    let home = bed.user.home.clone();
    let status_file = e2e.dir.join("ctrlc.status");
    let pid_file = home.join("cmd.pid");
    let env: String = bed
        .env()
        .into_iter()
        .chain([
            ("HOME", home.display().to_string()),
            ("USER", bed.user.name.clone()),
            ("LOGNAME", bed.user.name.clone()),
            ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
            ("NIX_REMOTE", "daemon".into()),
            ("NIXSTORE_AUTH_MFA_CODE", MFA_CODE.into()),
            ("TERM", "xterm".into()),
        ])
        .map(|(k, v)| format!("{k}='{v}' "))
        .collect();
    // The pane's shell catches SIGINT (a handler, not SIG_IGN, so the child gets the default
    // action back) and records exec's status. setpriv switches user without a new session or
    // process group: exec and CMD stay in the terminal's foreground group.
    let script = e2e.dir.join("ctrlc.sh");
    fs::write(
        &script,
        format!(
            "trap ':' INT\n\
             cd {home}\n\
             env -i {env} setpriv --reuid={uid} --regid={uid} --init-groups -- \
             {bin} exec -- sh -c 'echo $$ > {pid}; exec sleep 60'\n\
             echo $? > {status}\n\
             sleep 60\n",
            home = home.display(),
            uid = bed.user.uid,
            bin = e2e.bin.display(),
            pid = pid_file.display(),
            status = status_file.display(),
        ),
    )
    .unwrap();
    let tmux = Tmux::start(e2e, &format!("/bin/sh {}", script.display()), &[]);
    wait_until("CMD to start under exec", Duration::from_secs(60), || {
        fs::read_to_string(&pid_file).is_ok_and(|s| s.trim().parse::<u32>().is_ok())
    });
    let cmd_pid: u32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let proxy = proxy_pids(bed.user.uid);
    assert_eq!(proxy.len(), 1, "exec started the proxy");
    let exec_pid =
        processes(|p| p.comm == "nixstore-auth" && proc_uid(p.pid) == Some(bed.user.uid))
            .into_iter()
            .map(|p| p.pid)
            .find(|&p| proc_text(p, "cmdline").contains(" exec "))
            .expect("the exec process");

    tmux.send_keys(&["C-c"]);
    wait_until("exec to end after Ctrl-C", Duration::from_secs(20), || {
        fs::read_to_string(&status_file).is_ok_and(|s| !s.trim().is_empty())
    });
    assert_eq!(
        fs::read_to_string(&status_file).unwrap().trim(),
        "130",
        "exec's status after Ctrl-C; pane:\n{}",
        tmux.capture()
    );
    assert!(processes(|p| p.pid == cmd_pid).is_empty(), "CMD still runs");
    assert!(
        processes(|p| p.pid == exec_pid).is_empty(),
        "exec still runs"
    );
    bed.assert_proxy_exits();
    // The proxy's two lock files (empty, reused by the next run) may stay; nothing else.
    let rundir = bed.runtime_dir().join("nixstore-auth");
    let left: Vec<(String, u64)> = fs::read_dir(&rundir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.iter()
            .all(|(n, len)| (n == "start.lock" || n == "serve.lock") && *len == 0),
        "left behind in {}: {left:?}",
        rundir.display()
    );
    let pane = tmux.capture();
    assert!(
        !pane.contains("panicked") && !pane.contains("error"),
        "pane:\n{pane}"
    );
}

/// Proof 6: 50 paths substituted in one command through the proxy and the daemon.
fn fifty_paths_in_one_command(e2e: &E2e) {
    let bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "fifty");
    bed.upload(&cache.dir);
    let many = ExtraPaths::create(e2e, "many", 50, &cache_secret_key(e2e, "fifty"));
    bed.upload(&many.dir);
    bed.use_cache(&cache.public_key);

    let moto_from = bed.moto_log().len();
    let mut cmd = vec!["nix-store", "-r"];
    cmd.extend(many.paths.iter().map(String::as_str));
    let started = Instant::now();
    let out = bed.exec(&cmd);
    let took = started.elapsed();
    out.assert_success("exec -- nix-store -r 50 paths");
    note(&format!("50 paths through exec: {took:?}"));
    assert_eq!(many.valid(e2e), 50, "{out}");
    assert_eq!(
        bed.moto_gets(moto_from, |k| k.ends_with(".narinfo")),
        50,
        "one signed narinfo GET per path"
    );
    assert_eq!(bed.moto_gets(moto_from, |k| k.starts_with("nar/")), 50);
    let log = bed.proxy_log();
    assert!(
        !log.contains(": 50") && !log.contains("(503)") && !log.contains("(502)"),
        "the proxy failed requests:\n{log}"
    );
}

/// The untrusted-user route (issue 4, "Untrusted users"): a user in `nix-users` but not in
/// `trusted-users` runs `use s3://...`; it records the cache, exits 3 and prints the
/// administrator's snippet (the user's stable proxy URL as `extra-trusted-substituters`, the
/// public key), warning that the URL will be world-readable. Before the administrator acts,
/// `exec` warns that the daemon will ignore the proxy and the substitution fails; after root
/// appends the two printed lines to /etc/nix/nix.conf and restarts the daemon, `use` exits 0
/// and `exec` substitutes the path through the daemon from moto with signed GETs.
fn untrusted_user_substitutes_once_the_admin_lists_the_proxy_url(e2e: &E2e) {
    let mut bed = Bed::with_trust(e2e, false);
    let cache = SignedCache::create(e2e, "untrusted");
    bed.upload(&cache.dir);
    let use_args = [
        "use",
        bed.url.as_str(),
        "--name",
        NAME,
        "--public-key",
        cache.public_key.as_str(),
    ];

    // 1. use: the administrator's snippet on stdout, exit 3, the cache recorded. The URL (it
    // holds the proxy's secret) goes to a root-only file that /etc/nix/nix.conf `!include`s.
    let out = bed.nsa(use_args).run();
    out.assert_code(3, "use s3:// by an untrusted user");
    let proxy_url = format!("http://127.0.0.1:{}/{}/{NAME}", bed.port, bed.url_secret());
    let admin = AdminSnippet::parse(&out.stdout);
    assert_eq!(
        admin.private_file,
        PathBuf::from(format!(
            "/etc/nix/nixstore-auth-{}-{NAME}.conf",
            bed.user.name
        )),
        "{out}"
    );
    assert_eq!(
        admin.private_lines,
        [format!("extra-trusted-substituters = {proxy_url}")],
        "the root-only file's lines:\n{out}"
    );
    assert_eq!(
        admin.conf_lines,
        [
            format!("!include {}", admin.private_file.display()),
            format!("extra-trusted-public-keys = {}", cache.public_key),
        ],
        "the lines for /etc/nix/nix.conf hold no secret:\n{out}"
    );
    assert!(
        out.stderr.contains("readable by every local user") && out.stderr.contains("0600"),
        "use did not warn to keep the URL out of world-readable files:\n{out}"
    );
    assert!(
        !out.stderr.contains(&bed.url_secret()),
        "the URL secret belongs in the snippet only:\n{out}"
    );
    assert!(
        out.stderr.contains("the cache is recorded")
            && out.stderr.contains("nixstore-auth exec")
            && !out.stderr.contains("Nothing was written"),
        "use should say that it recorded the cache and how to use it once allowed:\n{out}"
    );
    assert!(
        !bed.user.read(".config/nix/nix.conf").contains(&proxy_url),
        "use wrote the URL to a nix.conf the daemon ignores"
    );
    let list = bed.nsa(["list", "--json"]).run();
    list.assert_success("list --json");
    let caches: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert!(
        caches.as_array().unwrap().iter().any(|c| c["name"] == NAME
            && c["kind"] == "s3"
            && c["url"]
                .as_str()
                .is_some_and(|u| u.starts_with(&format!("s3://{}", bed.bucket)))),
        "use did not record the cache:\n{list}"
    );

    // 2. Before the administrator acts: exec warns up front, the daemon ignores the proxy.
    let out = bed.exec(&["nix-store", "-r", &cache.store_path]);
    out.assert_failure("exec before the administrator listed the proxy URL");
    assert!(
        out.stderr
            .contains("the nix-daemon does not trust you and will ignore the proxy's URL"),
        "exec did not warn that the daemon ignores the proxy:\n{out}"
    );
    assert!(
        out.stderr.contains("ignoring untrusted substituter"),
        "Nix did not report the ignored substituter:\n{out}"
    );
    assert!(!cache.is_valid(e2e));
    let aws_secrets = bed.secrets();
    for s in aws_secrets.iter().filter(|s| **s != bed.url_secret()) {
        assert!(!out.all().contains(s.as_str()), "exec shows an AWS secret");
    }

    // 3. The administrator applies the snippet verbatim: the root-only file (0600) and the two
    // lines in /etc/nix/nix.conf, then restarts the daemon. The client cannot read the file.
    let _private = admin.apply(&e2e.nix, &bed.daemon);
    bed.daemon.restart();
    let moto_from = bed.moto_log().len();
    let out = bed.exec(&["nix-store", "-r", &cache.store_path]);
    out.assert_success("exec after the administrator listed the proxy URL");
    assert!(cache.is_valid(e2e), "not substituted:\n{out}");
    assert!(
        !out.stderr.contains("will ignore the proxy's URL")
            && !out.stderr.contains("ignoring untrusted substituter"),
        "the proxy URL was still ignored:\n{out}"
    );
    let narinfo = format!("{}.narinfo", cache.hash());
    assert_eq!(
        bed.moto_gets(moto_from, |k| k == narinfo),
        1,
        "moto did not serve {narinfo} once to a signed GET:\n{}",
        bed.moto_log()
    );
    assert!(
        bed.moto_gets(moto_from, |k| k.starts_with("nar/")) >= 1,
        "moto did not serve the NAR:\n{}",
        bed.moto_log()
    );
    for s in aws_secrets.iter().filter(|s| **s != bed.url_secret()) {
        assert!(!out.all().contains(s.as_str()), "exec shows an AWS secret");
    }
    // Nobody else finds the URL secret in a file, /etc/nix included, even with a 0755 home
    // (as `useradd` makes it).
    bed.user.open_home();
    let bob = TestUser::create(e2e, "b");
    let found = readable_files_holding(e2e, &bob, &[bed.url_secret()], &[Path::new("/etc/nix")]);
    assert!(
        found.is_empty(),
        "another user can read the URL secret in {found:?}"
    );
    // Only the proxy can tell that the daemon uses the URL: doctor must not call it broken.
    let doctor = bed.nsa(["doctor", NAME]).run();
    assert!(
        !doctor.all().contains("will ignore the proxy URL"),
        "doctor calls a URL listed in a root-only file ignored:\n{doctor}"
    );
    assert!(
        doctor.all().contains("only the nix-daemon can read it"),
        "doctor does not list the root-only include as such:\n{doctor}"
    );
}

crate::proofs!(
    exec_substitutes_from_private_s3_through_the_daemon,
    nars_bypass_the_proxy_by_presigned_redirect_where_s3_takes_them,
    push_uploads_a_signed_path_that_exec_substitutes_back,
    refused_session_gives_503_then_login_fixes_it_at_the_same_url,
    proxy_is_private_shared_and_exits_when_idle,
    ctrl_c_at_a_terminal_ends_cmd_and_exec_with_130,
    fifty_paths_in_one_command,
    untrusted_user_substitutes_once_the_admin_lists_the_proxy_url,
);
