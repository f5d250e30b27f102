//! Remote builders with private caches (issue 23), over real SSH to a builder in its own network
//! namespace (tests/support/builder.rs: the host's Nix 2.8 with its own store, configuration
//! and HOME, reached through a real sshd). The local nix-daemon of each Nix under test realises
//! every input of a build itself (through our proxy, or with our netrc), uploads what the
//! builder lacks, the build runs there (its output holds a marker only the builder's sandbox
//! has), and the output comes back. The builder never receives the proxy URL or a credential.
//!
//! Also measured here, and printed: what forwarding `builders-use-substitutes = false` would
//! save when a builder lists a cache it cannot reach (the decision lives in
//! `nix::forward::builder_decision`: nothing is forwarded).

use crate::support::*;
use serde::Deserialize;
use std::fs;
use std::time::{Duration, Instant};

/// One line of `doctor --json`.
#[derive(Debug, Deserialize)]
struct Check {
    section: String,
    status: String,
    summary: String,
}

/// A remote build through `exec` as `user` (`exec` runs the given `exec` closure):
/// `nix-build --no-out-link --max-jobs 0 ARGS FILE` of [`remote_build_expr`] over `inputs`,
/// written to the user's HOME. Returns the output and how long the command took.
fn remote_build(
    home: &std::path::Path,
    exec: impl Fn(&[&str]) -> Output,
    inputs: &[&str],
    args: &[&str],
) -> (Output, Duration, String) {
    let tag = unique_tag();
    let file = home.join(format!("remote-{tag}.nix"));
    write_public(&file, &remote_build_expr(inputs, &tag));
    let file = file.display().to_string();
    let mut cmd = vec!["nix-build", "--no-out-link", "--max-jobs", "0"];
    cmd.extend_from_slice(args);
    cmd.push(&file);
    let started = Instant::now();
    let out = exec(&cmd);
    (out, started.elapsed(), tag)
}

/// The first line of a store path's file in the local store of the Nix under test.
fn first_line(e2e: &E2e, store_path: &str) -> String {
    let text = fs::read_to_string(e2e.nix.host_path(store_path)).unwrap();
    text.lines().next().unwrap().to_string()
}

/// The build ran on the builder and its output came back: the local output holds the builder's
/// marker and the inputs' lines, the builder's store holds the output and the inputs
/// (uploaded), and sshd let root in. Over `ssh-ng` the builder's store also keeps the build
/// log (`nix-store --serve`, behind `ssh://`, builds with keep-log off).
#[track_caller]
fn assert_built_remotely(
    e2e: &E2e,
    builder: &Builder,
    scheme: &str,
    (out, tag): (&Output, &str),
    inputs: &[&str],
    logins_before: usize,
) -> String {
    out.assert_success("exec -- nix-build on the builder");
    let path = out
        .stdout
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert!(path.ends_with(&format!("-nsa-remote-{tag}")), "{out}");
    let lines: Vec<String> = inputs.iter().map(|p| first_line(e2e, p)).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert_eq!(
        fs::read_to_string(e2e.nix.host_path(&path)).unwrap(),
        remote_build_output(builder, &lines),
        "the output was not made by the builder's sandbox:\n{out}"
    );
    assert!(builder.holds(&path), "the builder's store lacks {path}");
    for input in inputs {
        assert!(
            builder.holds(input),
            "{input} was not uploaded to the builder"
        );
    }
    let logged = builder.build_logs().iter().any(|l| {
        l.to_string_lossy()
            .contains(&format!("-nsa-remote-{tag}.drv"))
    });
    assert_eq!(
        logged,
        scheme == "ssh-ng",
        "build log of {tag} in the builder's store over {scheme}: {:?}",
        builder.build_logs()
    );
    assert!(builder.logins() > logins_before, "sshd saw no login");
    path
}

/// Proofs 1, 2, 4 and 5 of issue 23 with the private S3 cache (moto with authentication on):
/// `exec -- nix-build --max-jobs 0 --builders 'ssh-ng://…'` and then `ssh://…` of a derivation
/// whose two inputs are only in the bucket: each built on the builder, both inputs came through
/// the local proxy (moto's log), the output is back here. Then an administrator's
/// `/etc/nix/machines` with `builders-use-substitutes = true` and a builder whose own nix.conf
/// lists a cache it cannot reach (the URL of our proxy's port, which its 127.0.0.1 does not
/// have): builds still succeed; the times with and without `builders-use-substitutes = false`
/// are printed for each protocol, and what the builder did either way is asserted (it backs
/// the decision to forward nothing). doctor lists the builder. Last, the builder's whole
/// directory (store, configuration, logs, HOME) holds neither the proxy URL's secret nor any
/// AWS secret nor the session's key id.
fn s3_inputs_reach_builders_that_never_see_the_proxy(e2e: &E2e) {
    let builder = Builder::start(e2e, "");
    let mut bed = Bed::new(e2e);
    let cache = SignedCache::create(e2e, "bld");
    let second = ExtraPaths::create(e2e, "bld2", 1, &cache_secret_key(e2e, "bld"));
    bed.upload(&cache.dir);
    bed.upload(&second.dir);
    let _first_built = DeleteWithReferrers(e2e, cache.store_path.clone());
    let _second_built = DeleteWithReferrers(e2e, second.paths[0].clone());
    bed.use_cache(&cache.public_key);
    let conf = NixConf::new()
        .trusted_user(&bed.user.name)
        .daemon_env("NIX_SSHOPTS", &builder.sshopts());
    bed.daemon.reconfigure(&conf);
    let inputs = [cache.store_path.as_str(), second.paths[0].as_str()];
    let home = bed.user.home.clone();
    let exec = |cmd: &[&str]| bed.exec(cmd);

    // 1 and 2: over ssh-ng:// and ssh://, inputs realised here through the proxy.
    for scheme in ["ssh-ng", "ssh"] {
        let (from, logins) = (bed.moto_log().len(), builder.logins());
        let uri = builder.uri(scheme);
        let (out, took, tag) = remote_build(&home, exec, &inputs, &["--builders", &uri]);
        note(&format!(
            "remote build over {scheme}://, inputs from S3: {took:?}"
        ));
        assert_built_remotely(e2e, &builder, scheme, (&out, &tag), &inputs, logins);
        assert!(
            out.stderr
                .contains(&format!("on '{scheme}://{BUILDER_HOST}")),
            "{out}"
        );
        // The daemon may answer a narinfo from its own cache the second time; the NARs
        // come through the proxy each time.
        if scheme == "ssh-ng" {
            for input in inputs {
                let narinfo = format!("{}.narinfo", &input[11..43]);
                assert_eq!(
                    bed.moto_gets(from, |k| k == narinfo),
                    1,
                    "moto did not serve {narinfo}:\n{}",
                    bed.moto_log()
                );
            }
        }
        assert!(
            bed.moto_gets(from, |k| k.starts_with("nar/")) >= 2,
            "moto did not serve both NARs over {scheme}:\n{}",
            &bed.moto_log()[from..]
        );
        bed.assert_no_secret("exec -v output", &without_nix_progress(&out));
        builder.delete(&inputs);
        for input in inputs {
            delete_with_referrers(e2e, input);
        }
    }

    // 4: an administrator's builders with builders-use-substitutes = true, and a builder whose
    // own cache is unreachable from it.
    let machines = e2e.dir.join("machines");
    write_public(&machines, &format!("{} - - 1\n", builder.uri("ssh-ng")));
    bed.daemon.reconfigure(&conf.clone().extra(&format!(
        "builders = @{}\nbuilders-use-substitutes = true\n",
        machines.display()
    )));
    let exec = |cmd: &[&str]| bed.exec(cmd);
    let unreachable = format!("http://127.0.0.1:{}/nsa-unreachable", bed.port);
    builder.write_conf(&format!("substituters = {unreachable}"));
    let doctor = bed.nsa(["doctor", "--json"]).run();
    let checks: Vec<Check> = serde_json::from_str(&doctor.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{doctor}"));
    let listed = checks
        .iter()
        .find(|c| c.section == "builders" && c.summary.contains(&builder.uri("ssh-ng")))
        .unwrap_or_else(|| panic!("doctor does not list the builder: {checks:#?}"));
    assert_eq!(listed.status, "info", "{listed:?}");
    assert!(
        listed.summary.contains(&machines.display().to_string())
            && listed
                .summary
                .contains("tries its own caches for missing inputs and for the output"),
        "{listed:?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.section == "builders"
                && c.summary.contains("cannot reach the loopback proxy")),
        "{checks:#?}"
    );
    // The builder's lookup: one failed open of its cache per build, however many inputs.
    let tried = format!("unable to download '{unreachable}/nix-cache-info'");
    let attempts = |out: &Output| {
        out.stderr
            .lines()
            .filter(|l| l.contains(&tried) && !l.contains("retrying"))
            .count()
    };
    // The local daemon substitutes the inputs before the builds below: only the builder's part
    // is timed.
    root_nix(e2e, "nix-store", &["-r", inputs[0], inputs[1]], None);
    let mut times = Vec::new();
    for scheme in ["ssh-ng", "ssh"] {
        write_public(&machines, &format!("{} - - 1\n", builder.uri(scheme)));
        for forwarded in [false, true] {
            let args: &[&str] = if forwarded {
                &["--option", "builders-use-substitutes", "false"]
            } else {
                &[]
            };
            builder.delete(&inputs);
            let logins = builder.logins();
            let (out, took, tag) = remote_build(&home, exec, &inputs, args);
            assert_built_remotely(e2e, &builder, scheme, (&out, &tag), &inputs, logins);
            // exec saw the settings in force (the administrator's, or the command line's) and
            // forwarded nothing for builders.
            let decision = if forwarded {
                "remote builders get every input uploaded from here"
            } else {
                "remote builders look in their own caches first"
            };
            assert!(
                out.stderr.contains(decision)
                    && !out
                        .stderr
                        .lines()
                        .any(|l| l.starts_with("debug: forwarding") && l.contains("builders")),
                "exec should name the builder decision and forward nothing for it:\n{out}"
            );
            let looked = attempts(&out);
            times.push(format!(
                "{scheme}:// builder, builders-use-substitutes {}: {took:.2?} ({looked} failed lookup of its own cache)",
                if forwarded { "false (forwarded)" } else { "true (as configured)" }
            ));
            // What the builder did: ssh-ng looks for the output in its own caches whatever the
            // setting; ssh:// only for the inputs, only with it.
            let expected = usize::from(scheme == "ssh-ng" || !forwarded);
            assert_eq!(looked, expected, "{scheme}, forwarded: {forwarded}\n{out}");
        }
    }
    note(&format!(
        "builders-use-substitutes, builder with an unreachable cache (Nix {}):\n  {}",
        e2e.nix.version(),
        times.join("\n  ")
    ));

    // 5: nothing of ours on the builder.
    let (_, session) = bed.session_entry();
    let mut needles = bed.secrets();
    needles.push(session["access_key_id"].as_str().unwrap().to_string());
    needles.push(bed.key_id.clone());
    needles.push(format!("127.0.0.1:{}/{}", bed.port, bed.url_secret()));
    let found = builder.files_holding_any(&needles);
    assert!(found.is_empty(), "the builder holds a secret in {found:?}");
    // The scan reads the builder's store, configuration and HOME (so an empty result means
    // something): its outputs and its nix.conf hold what they should.
    let found = builder.files_holding_any(&[builder.marker.clone(), unreachable]);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with(builder.root.join("nix/store")))
            && found.iter().any(|f| f.starts_with(&builder.conf_dir)),
        "{found:?}"
    );
}

/// Proof 3 and 5 with the HTTPS cache behind Basic auth: the token in nixstore-auth's secret
/// store (no Secret Service here: its 0600 file store), so `exec` writes an ephemeral netrc and
/// forwards it to the local daemon; `exec -- nix-build --max-jobs 0 --builders 'ssh-ng://…'`
/// builds on the builder with the input that nginx served to the login; the builder's
/// directory never holds the token.
fn https_inputs_reach_a_builder_that_never_sees_the_token(e2e: &E2e) {
    let builder = Builder::start(e2e, "");
    let user = TestUser::create(e2e, "bh");
    let session = UserSession::without_keyring(e2e, &user);
    let token = new_token();
    let cache = SignedCache::create(e2e, "bldh");
    let _built = DeleteWithReferrers(e2e, cache.store_path.clone());
    let nginx = Nginx::start(e2e, NginxOptions::new(&cache.dir).basic_auth(LOGIN, &token));
    let _daemon = NixDaemon::start(
        e2e,
        &NixConf::new()
            .trusted_user(&user.name)
            .daemon_env("NIX_SSHOPTS", &builder.sshopts()),
    );
    session
        .nsa(
            e2e,
            [
                "use",
                &nginx.url(),
                "--public-key",
                &cache.public_key,
                "--token-stdin",
                "--login",
                LOGIN,
                "--secret-store",
                "keyring",
            ],
        )
        .stdin(format!("{token}\n"))
        .run()
        .assert_success("use --secret-store keyring");
    let exec = |cmd: &[&str]| {
        session
            .nsa(e2e, ["-v", "exec", "--"])
            .args(cmd)
            .env("NO_COLOR", "1")
            .run()
    };
    let (from, logins) = (nginx.access_log().len(), builder.logins());
    let uri = builder.uri("ssh-ng");
    let inputs = [cache.store_path.as_str()];
    let (out, took, tag) = remote_build(&user.home, exec, &inputs, &["--builders", &uri]);
    note(&format!(
        "remote build over ssh-ng://, input from HTTPS: {took:?}"
    ));
    assert_built_remotely(e2e, &builder, "ssh-ng", (&out, &tag), &inputs, logins);
    assert!(out.stderr.contains("netrc-file"), "{out}");
    out.assert_hides(&[&token]);
    assert_authenticated_fetch(&nginx, &cache, from);
    let found = builder.files_holding_any(std::slice::from_ref(&token));
    assert!(found.is_empty(), "the builder holds the token in {found:?}");
    let found = builder.files_holding_any(std::slice::from_ref(&builder.marker));
    assert!(
        !found.is_empty(),
        "the scan found not even the builder's output"
    );
}

crate::proofs!(
    s3_inputs_reach_builders_that_never_see_the_proxy,
    https_inputs_reach_a_builder_that_never_sees_the_token,
);
