//! S3-compatible stores (issue 21, "Proof with real parts"), against s3s-fs, an S3 server that
//! checks every signature, presigned URLs included, behind a logging, fault-injecting front
//! (tests/support/s3s.rs, tests/support/py/s3_front.py), through the real nix-daemon of each
//! Nix under test. The cache URL is Nix's own: `s3://BUCKET?region=garage&endpoint=...&
//! addressing-style=path&profile=s3s` (a custom region, as Garage's; path style, as Garage
//! needs). s3s-fs has one static key: the user's AWS profile holds it as a long-term key.

use crate::support::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const NAME: &str = "store";

/// Prints how long the proof's body took (what these proofs add to the suite), at its end.
struct Timed(Instant, String);

impl Timed {
    fn start(e2e: &E2e) -> Timed {
        Timed(
            Instant::now(),
            format!("{} on Nix {}", e2e.name, e2e.nix.id),
        )
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        note(&format!(
            "{}: {:.1} s",
            self.1,
            self.0.elapsed().as_secs_f64()
        ));
    }
}

/// The front's log entries for `method` on a key of the bucket ending with `suffix`.
fn requests<'a>(
    all: &'a [serde_json::Value],
    bed: &StoreBed,
    method: &str,
    suffix: &str,
) -> Vec<&'a serde_json::Value> {
    let prefix = format!("/{}/", bed.bucket);
    all.iter()
        .filter(|r| {
            r["method"] == method
                && r["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(&prefix) && p.ends_with(suffix))
        })
        .collect()
}

fn hash_of(path: &str) -> &str {
    &path.rsplit('/').next().unwrap()[..32]
}

/// The signing key of a [`SignedCache`] made with `tag`, as `keys/cache.sk` of the user, and
/// recorded for the cache with `use NAME --secret-key`.
fn record_key(bed: &StoreBed, tag: &str) -> String {
    let key = fs::read_to_string(cache_secret_key(bed.e2e, tag)).unwrap();
    bed.write_user_file("keys/cache.sk", &key);
    bed.nsa(["use", NAME, "--secret-key", "keys/cache.sk"])
        .run()
        .assert_success("use NAME --secret-key");
    key.split(':').next().unwrap().to_string()
}

/// A new store path holding `mib` MiB of random bytes (incompressible).
fn big_path(e2e: &E2e, tag: &str, mib: usize) -> String {
    let dir = e2e.private_dir(&format!("big-{tag}"));
    let file = dir.join(format!("nixstore-auth-e2e-{tag}-{}", unique_tag()));
    let mut bytes = vec![0u8; mib * 1024 * 1024];
    let mut f = fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut bytes).unwrap();
    fs::write(&file, &bytes).unwrap();
    let out = root_nix(e2e, "nix-store", &["--add", file.to_str().unwrap()], None);
    out.assert_success("nix-store --add of a big file");
    out.stdout.trim().to_string()
}

/// `nix store verify --sigs-needed 1` of `paths` in the local store, against `public_key`.
fn verify_local(e2e: &E2e, paths: &[&str], public_key: &str) {
    let mut args = vec![
        "store",
        "verify",
        "--trusted-public-keys",
        public_key,
        "--sigs-needed",
        "1",
    ];
    args.extend_from_slice(paths);
    root_nix(e2e, "nix", &args, None).assert_success("nix store verify --sigs-needed 1");
}

/// Proofs 1 and 2: through the daemon from the signature-checking server, the default route:
/// the NAR comes by a presigned URL (the front logs the presigned GET, and s3s-fs, which checks
/// it, answers 200); with the presigned URL tampered (one signature digit), s3s-fs answers 403
/// and the substitution fails, and untampered again it works. Every signed request (headers or
/// presigned) carries the URL's custom region in its credential scope, and every path is
/// path style (`/BUCKET/KEY`).
fn presigned_nars_region_and_path_style_through_the_daemon(e2e: &E2e) {
    let _timed = Timed::start(e2e);
    let bed = StoreBed::new(e2e);
    let cache = SignedCache::create(e2e, "st1");
    bed.s3s.put_dir(&bed.bucket, &cache.dir);
    bed.use_cache(&bed.url(""), NAME, &cache.public_key);
    let substitute = || {
        bed.nsa(["-v", "exec", "--", "nix-store", "-r", &cache.store_path])
            .run()
    };
    let out = substitute();
    out.assert_success("exec -- nix-store -r through s3s-fs");
    assert!(cache.is_valid(e2e), "not substituted:\n{out}");
    let log = bed.proxy_log();
    assert!(
        log.contains("S3 takes presigned URLs"),
        "the proxy did not take the presigned route:\n{log}"
    );
    let all = bed.front.requests();
    let nar_gets = requests(&all, &bed, "GET", ".nar.xz");
    assert!(
        nar_gets
            .iter()
            .any(|r| r["presigned"] == true && r["status"] == 200),
        "no presigned NAR GET that s3s-fs accepted: {all:#?}"
    );
    assert!(
        nar_gets.iter().all(|r| r["presigned"] == true),
        "a NAR was streamed, not redirected: {nar_gets:#?}"
    );
    let signed: Vec<_> = all.iter().filter(|r| r["scope"] != "").collect();
    assert!(signed.len() >= 3, "{all:#?}");
    for r in &signed {
        assert_eq!(r["scope"], "garage/s3/aws4_request", "{r}");
        let path = r["path"].as_str().unwrap();
        assert!(
            path.starts_with(&format!("/{}/", bed.bucket)),
            "not path style: {r}"
        );
    }

    // Negative control: the same route with the presigned URL tampered.
    cache.delete_local(e2e);
    bed.front.tamper(true);
    let from = bed.front.requests().len();
    let out = substitute();
    assert!(
        !cache.is_valid(e2e),
        "substituted with a tampered presigned URL:\n{out}"
    );
    let after = bed.front.requests();
    let tampered = requests(&after[from..], &bed, "GET", ".nar.xz");
    assert!(
        tampered
            .iter()
            .any(|r| r["tampered"] == true && r["status"] == 403),
        "s3s-fs did not refuse the tampered presigned URL: {tampered:#?}"
    );
    bed.front.tamper(false);
    let out = substitute();
    out.assert_success("exec -- nix-store -r, untampered again");
    assert!(cache.is_valid(e2e), "{out}");
}

/// Proof 3: a 20 MiB incompressible path with `multipart-threshold` and `multipart-chunk-size`
/// of 5 MiB in the cache URL goes up in parts (the front logs CreateMultipartUpload, the parts
/// and CompleteMultipartUpload); part 2 fails once (the front) and is retried; the path
/// substitutes back through the daemon and `nix store verify` accepts it. An upload killed
/// midway (the proxy and push killed with SIGKILL while part 3 is held) leaves an unfinished
/// upload in s3s-fs's data directory; the next `push` aborts it, and none is left.
fn multipart_uploads_retry_parts_and_leave_nothing_behind(e2e: &E2e) {
    let _timed = Timed::start(e2e);
    let bed = StoreBed::new(e2e);
    let cache = SignedCache::create(e2e, "st3");
    bed.use_cache(
        &bed.url("&multipart-threshold=5242880&multipart-chunk-size=5242880"),
        NAME,
        &cache.public_key,
    );
    record_key(&bed, "st3");
    let p1 = big_path(e2e, "mp1", 20);
    let p2 = big_path(e2e, "mp2", 20);
    let _cleanup = ExtraPaths::guard(e2e, vec![p1.clone(), p2.clone()]);
    bed.front.rule("PUT", "partNumber=2", false, 1);
    let started = Instant::now();
    let out = bed.nsa(["-v", "push", NAME, &p1]).run();
    out.assert_success("push of a 20 MiB path");
    note(&format!("push of 20 MiB in parts: {:?}", started.elapsed()));
    let all = bed.front.requests();
    let nar = requests(&all, &bed, "POST", ".nar.zst");
    assert!(
        nar.iter()
            .any(|r| r["query"] == serde_json::json!(["uploads"]) && r["status"] == 200),
        "no CreateMultipartUpload: {all:#?}"
    );
    assert!(
        nar.iter()
            .any(|r| r["query"] == serde_json::json!(["uploadId"]) && r["status"] == 200),
        "no CompleteMultipartUpload: {all:#?}"
    );
    let parts = requests(&all, &bed, "PUT", ".nar.zst");
    let ok: Vec<&str> = parts
        .iter()
        .filter(|r| r["status"] == 200)
        .filter_map(|r| r["part"].as_str())
        .collect();
    assert_eq!(ok, ["1", "2", "3", "4", "5"], "{parts:#?}");
    assert!(
        parts
            .iter()
            .any(|r| r["part"] == "2" && r["front"] == "failed"),
        "part 2 was not failed once: {parts:#?}"
    );
    assert!(
        parts
            .iter()
            .all(|r| r["bytes"].as_u64().unwrap() <= 5 * 1024 * 1024),
        "a part above the chunk size: {parts:#?}"
    );
    assert!(bed.s3s.unfinished_uploads().is_empty());
    let narinfo = String::from_utf8(
        bed.s3s
            .object(&bed.bucket, &format!("{}.narinfo", hash_of(&p1)))
            .expect("the narinfo in the bucket"),
    )
    .unwrap();
    root_nix(e2e, "nix-store", &["--delete", &p1], None).assert_success("delete p1");
    let out = bed.nsa(["exec", "--", "nix-store", "-r", &p1]).run();
    out.assert_success("substitute the multipart NAR back");
    verify_local(e2e, &[&p1], &cache.public_key);
    assert!(narinfo.contains("Compression: zstd"), "{narinfo}");

    // Killed midway: part 3 is held, the proxy and push die, the next push cleans up.
    bed.front.rule("PUT", "partNumber=3", true, 1);
    let log = e2e.dir.join("push-killed.log");
    let mut push = Service::spawn(
        "push (to be killed)",
        bed.nsa(["push", NAME, &p2]).into_command(),
        &log,
        Duration::from_secs(120),
        || {
            bed.front
                .requests()
                .iter()
                .any(|r| r["part"] == "3" && r["front"] == "stalled")
        },
    );
    for pid in bed.proxy_pids() {
        // SAFETY: kill(2) on the test user's proxy, which this test started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    push.stop();
    wait_until("the proxy to die", Duration::from_secs(10), || {
        bed.proxy_pids().is_empty()
    });
    assert!(
        !bed.s3s.unfinished_uploads().is_empty(),
        "no unfinished upload after the kill: the proof would prove nothing"
    );
    let records = bed
        .user
        .home
        .join(".local/state/nixstore-auth/multipart-uploads");
    let meta = fs::metadata(&records).expect("the upload IDs in flight are recorded");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    bed.front.release();
    let out = bed.nsa(["push", NAME, &p2]).run();
    out.assert_success("push after the killed one");
    assert_eq!(
        bed.s3s.unfinished_uploads(),
        Vec::<String>::new(),
        "an unfinished upload is left:\n{}",
        bed.proxy_log()
    );
    assert!(
        bed.proxy_log()
            .contains("aborted an unfinished multipart upload"),
        "{}",
        bed.proxy_log()
    );
    assert!(
        bed.s3s
            .object(&bed.bucket, &format!("{}.narinfo", hash_of(&p2)))
            .is_some()
    );
}

/// Writes a derivation below the user's HOME: `top` references `dep`, so the closure has two
/// paths (the builder has no PATH: shell built-ins only). Its relative path.
fn closure_derivation(bed: &StoreBed, tag: &str) -> String {
    let u = unique_tag();
    let text = format!(
        "let dep = derivation {{ name = \"nsa-e2e-dep-{tag}\"; system = builtins.currentSystem; \
         builder = \"/bin/sh\"; args = [ \"-c\" \"echo dep {u} > $out\" ]; }};\n\
         in derivation {{ name = \"nsa-e2e-top-{tag}\"; system = builtins.currentSystem; \
         builder = \"/bin/sh\"; args = [ \"-c\" \"i=0; while [ $i -lt 2000 ]; do echo ${{dep}} {u}; i=$((i+1)); done > $out\" ]; }}\n"
    );
    let rel = format!("drv-{tag}.nix");
    bed.write_user_file(&rel, &text);
    rel
}

fn build(bed: &StoreBed, drv: &str) -> String {
    let out = bed.cmd("nix-build").args([drv, "--no-out-link"]).run();
    out.assert_success("nix-build");
    out.stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("/nix/store/"))
        .unwrap_or_else(|| panic!("no store path:\n{out}"))
        .trim()
        .to_string()
}

/// Proof 4: `push` of a closure (a path and the path it references) with zstd, the default:
/// `nix-cache-info` is written into the empty bucket, the dependency's narinfo goes up before
/// the referrer's NAR and narinfo, the NARs are `.nar.zst` and the 2000-line text path is
/// stored smaller than it is; then, as on a machine that has neither (both deleted), the
/// daemon substitutes the closure with the cache's public key and `nix store verify
/// --sigs-needed 1` passes.
fn push_closure_with_zstd_substitutes_on_a_fresh_store(e2e: &E2e) {
    let _timed = Timed::start(e2e);
    let bed = StoreBed::new(e2e);
    let cache = SignedCache::create(e2e, "st4");
    bed.use_cache(&bed.url(""), NAME, &cache.public_key);
    let key_name = record_key(&bed, "st4");
    let drv = closure_derivation(&bed, "st4");
    let top = build(&bed, &drv);
    let refs = root_nix(e2e, "nix-store", &["--query", "--references", &top], None);
    refs.assert_success("nix-store --query --references");
    let dep = refs.stdout.trim().to_string();
    assert!(dep.contains("nsa-e2e-dep-st4"), "{refs}");
    let _cleanup = ExtraPaths::guard(e2e, vec![top.clone(), dep.clone()]);
    let out = bed.nsa(["push", NAME, &top]).run();
    out.assert_success("push of a closure");
    assert!(out.stderr.contains("pushed 2 path(s)"), "{out}");
    let info = bed
        .s3s
        .object(&bed.bucket, "nix-cache-info")
        .expect("nix-cache-info written to the empty bucket");
    assert_eq!(String::from_utf8(info).unwrap(), "StoreDir: /nix/store\n");
    let all = bed.front.requests();
    let at = |method: &str, suffix: &str| {
        all.iter()
            .position(|r| {
                r["method"] == method
                    && r["status"] == 200
                    && r["path"].as_str().unwrap_or("").ends_with(suffix)
            })
            .unwrap_or_else(|| panic!("no {method} of *{suffix}: {all:#?}"))
    };
    let dep_narinfo = at("PUT", &format!("{}.narinfo", hash_of(&dep)));
    let top_narinfo = at("PUT", &format!("{}.narinfo", hash_of(&top)));
    assert!(
        dep_narinfo < top_narinfo,
        "the referrer's narinfo went first"
    );
    let top_text = String::from_utf8(
        bed.s3s
            .object(&bed.bucket, &format!("{}.narinfo", hash_of(&top)))
            .unwrap(),
    )
    .unwrap();
    assert!(top_text.contains("Compression: zstd"), "{top_text}");
    assert!(
        top_text.contains(&format!("Sig: {key_name}:")),
        "{top_text}"
    );
    let field = |name: &str| -> u64 {
        top_text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        field("FileSize") * 4 < field("NarSize"),
        "the compressible path is not stored smaller: {top_text}"
    );
    let url = top_text
        .lines()
        .find_map(|l| l.strip_prefix("URL: "))
        .unwrap();
    assert!(url.ends_with(".nar.zst"), "{top_text}");
    let nar_put = at("PUT", url);
    assert!(
        dep_narinfo < nar_put,
        "the referrer's NAR went up before its reference was in"
    );

    root_nix(e2e, "nix-store", &["--delete", &top, &dep], None).assert_success("delete both");
    let out = bed.nsa(["exec", "--", "nix-store", "-r", &top]).run();
    out.assert_success("substitute the closure through the daemon");
    verify_local(e2e, &[&top, &dep], &cache.public_key);
}

/// Issue 18, defect 3: every child of `push` gets its AWS variables from the session alone.
/// With `AWS_PROFILE=wrong` and a bogus `AWS_SESSION_TOKEN` in the user's environment and stubs
/// of `nix` and `nix-store` first on PATH that record their environment (then run the real
/// program), the children (`nix path-info`; `nix-store --dump` where it runs) saw the session's
/// key and neither variable. (Before, `push` gave `nix copy` only the variables to set: with the
/// binary of main before this change, `nix copy` and both `nix-store` children recorded
/// `AWS_PROFILE=wrong` and the bogus token.)
fn push_children_get_the_session_environment_and_nothing_else(e2e: &E2e) {
    let _timed = Timed::start(e2e);
    let bed = StoreBed::new(e2e);
    let cache = SignedCache::create(e2e, "st5");
    bed.use_cache(&bed.url(""), NAME, &cache.public_key);
    record_key(&bed, "st5");
    let path = add_paths(e2e, "st5", 1).remove(0);
    let _cleanup = ExtraPaths::guard(e2e, vec![path.clone()]);
    let stubs = bed.user.home.join("stubs");
    let seen = bed.user.home.join("stub-env");
    for dir in [&stubs, &seen] {
        fs::create_dir_all(dir).unwrap();
        std::os::unix::fs::chown(dir, Some(bed.user.uid), Some(bed.user.uid)).unwrap();
    }
    for prog in ["nix", "nix-store"] {
        let stub = stubs.join(prog);
        fs::write(
            &stub,
            format!(
                "#!/bin/sh\nenv > \"{}/{prog}.$$\"\nexec /usr/bin/{prog} \"$@\"\n",
                seen.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&stub, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bogus = format!("BOGUS-TOKEN-{}", unique_tag());
    let out = bed
        .nsa(["push", NAME, &path])
        .env("PATH", format!("{}:{USER_PATH}", stubs.display()))
        .env("AWS_PROFILE", "wrong")
        .env("AWS_SESSION_TOKEN", &bogus)
        .run();
    out.assert_success("push with AWS_PROFILE=wrong and a bogus token around");
    let records: Vec<(String, String)> = fs::read_dir(&seen)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    // `nix path-info` always runs; `nix-store --dump` only where the NAR cannot be written
    // in-process: whichever ran is checked.
    assert!(
        records.iter().any(|(n, _)| n.starts_with("nix.")),
        "no child nix ran through the stub: {:?}",
        records.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for (name, env) in &records {
        assert!(
            !env.contains("AWS_PROFILE="),
            "{name} saw AWS_PROFILE:\n{env}"
        );
        assert!(!env.contains(&bogus), "{name} saw the bogus token");
        assert!(
            env.contains(&format!("AWS_ACCESS_KEY_ID={}", bed.s3s.key_id)),
            "{name} did not get the session's key"
        );
    }
}

crate::proofs!(
    presigned_nars_region_and_path_style_through_the_daemon,
    multipart_uploads_retry_parts_and_leave_nothing_behind,
    push_closure_with_zstd_substitutes_on_a_fresh_store,
    push_children_get_the_session_environment_and_nothing_else,
);
