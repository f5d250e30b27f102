//! The files parse, and nix/lib.nix's functions render what the contracts say: the unit files
//! (UNITS.md), the nix.conf settings of each kind of cache, the checks' messages, the tool's
//! naming rules; and what Nix itself makes of the rendered nix.conf fragments.

use super::*;

/// Every .nix file parses, and each module file evaluates to a function.
pub(crate) fn parse_every_nix_file(nix: Nix) {
    let p = place(nix);
    let listed = Command::new("git")
        .args(["ls-files", "*.nix"])
        .current_dir(p.host_path(&p.repo()))
        .output()
        .unwrap();
    let files: Vec<String> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    for expected in [
        "flake.nix",
        "default.nix",
        "nix/lib.nix",
        "nix/package.nix",
        "nix/cache-options.nix",
        "nix/nixos-module.nix",
        "nix/home-module.nix",
        "tests/nix/modules.nix",
        "tests/nix/stub-nixpkgs/flake.nix",
        "tests/nix/stub-nixpkgs/default.nix",
        "tests/nix/stub-nixpkgs/lib.nix",
    ] {
        assert!(
            files.iter().any(|f| f == expected),
            "{expected} is not tracked by git: {files:?}"
        );
    }
    let mut args = vec!["--parse"];
    args.extend(files.iter().map(String::as_str));
    run_nix(nix, &p.repo(), "nix-instantiate", &args, &[]).expect_ok("nix-instantiate --parse");
    let kinds = eval_ok(
        nix,
        "map (f: builtins.typeOf (import f)) [ ./nix/nixos-module.nix ./nix/home-module.nix ./nix/package.nix ./nix/lib.nix ]",
        &Value::Null,
    );
    assert_eq!(kinds, json!(["lambda", "lambda", "lambda", "set"]));
}

/// The unit files are UNITS.md's, byte for byte; a bad port or binary is refused with a reason.
pub(crate) fn lib_units(nix: Nix) {
    let bin = "/nix/store/00000000000000000000000000000000-nixstore-auth-0.1.0/bin/nixstore-auth";
    let got = eval_ok(
        nix,
        "nsa.units { bin = input.bin; port = input.port; }",
        &json!({"bin": bin, "port": 20123}),
    );
    assert_eq!(got, expected_units(bin, 20123));
    let refused = eval_ok(
        nix,
        "map (a: (builtins.tryEval (builtins.deepSeq (nsa.units a) true)).success) input",
        &json!([
            {"bin": bin, "port": 0}, {"bin": bin, "port": 65536}, {"bin": bin, "port": "20123"},
            {"bin": "nixstore-auth", "port": 1}, {"bin": "/a b/nixstore-auth", "port": 1},
            {"bin": "/a\nExecStartPre=/evil", "port": 1},
        ]),
    );
    assert_eq!(refused, json!([false, false, false, false, false, false]));
    let why = eval(nix, "nsa.units { bin = input; port = 0; }", &json!(bin)).unwrap_err();
    assert!(
        why.contains("the proxy port must be an integer from 1 to 65535, got 0"),
        "{why}"
    );
    let why = eval(
        nix,
        "nsa.units { bin = input; port = 1; }",
        &json!("relative/bin"),
    )
    .unwrap_err();
    assert!(why.contains("the binary must be an absolute path"), "{why}");
    assert_eq!(
        eval_ok(nix, "nsa.includeLine", &Value::Null),
        json!("!include nixstore-auth.conf")
    );
}

/// What the system and the user nix.conf get for each kind of cache.
pub(crate) fn lib_cache_settings(nix: Nix) {
    let expr = "{
        system = nsa.systemSettings { caches = input.caches; serviceUsers = [ \"alice\" \"Bob.Smith\" ]; };
        systemNoUsers = nsa.systemSettings { caches = input.caches; };
        explicitUsers = nsa.systemSettings {
          caches = input.caches // { my-bucket = input.caches.my-bucket // { proxyUsers = [ \"carol\" ]; }; };
          serviceUsers = [ \"alice\" ];
        };
        s3Direct = nsa.systemSettings { caches.b = { url = \"s3://b\"; publicKeys = [ ]; route = \"direct\"; }; };
        userService = nsa.userSettings { caches = input.caches; service = true; };
        user = nsa.userSettings { caches = input.caches; };
        empty = nsa.systemSettings { caches = { }; };
        emptyUser = nsa.userSettings { caches = { }; };
    }";
    let got = eval_ok(nix, expr, &json!({"caches": sample_caches()}));
    let https = "https://cache.example.org";
    assert_eq!(
        got["system"],
        json!({
            "settings": {
                "extra-substituters": [https],
                "extra-trusted-substituters": [https],
                "extra-trusted-public-keys": [HTTPS_KEY, S3_KEY],
                "netrc-file": "/run/secrets/nix-netrc",
            },
            // The root-only files `nixstore-auth use` names for an untrusted user (the user name
            // as the tool's sanitize_name makes it).
            "extraOptions": "!include /etc/nix/nixstore-auth-alice-my-bucket.conf\n!include /etc/nix/nixstore-auth-bob-smith-my-bucket.conf\n",
            "errors": [],
        })
    );
    assert_eq!(got["systemNoUsers"]["extraOptions"], json!(""));
    assert_eq!(
        got["explicitUsers"]["extraOptions"],
        json!("!include /etc/nix/nixstore-auth-carol-my-bucket.conf\n")
    );
    assert_eq!(
        got["s3Direct"]["settings"],
        json!({"extra-substituters": ["s3://b"], "extra-trusted-substituters": ["s3://b"]})
    );
    assert_eq!(
        got["userService"],
        json!({
            "settings": {
                "extra-substituters": [https],
                "extra-trusted-public-keys": [HTTPS_KEY, S3_KEY],
                "netrc-file": "/run/secrets/nix-netrc",
            },
            "extraOptions": "!include nixstore-auth.conf\n",
            "errors": [],
        })
    );
    assert_eq!(got["user"]["extraOptions"], json!(""));
    assert_eq!(got["user"]["settings"], got["userService"]["settings"]);
    for e in ["empty", "emptyUser"] {
        assert_eq!(
            got[e],
            json!({"settings": {}, "extraOptions": "", "errors": []}),
            "{e}"
        );
    }
    // No secret in any of it: an S3 cache's URL never becomes a setting by the proxy route.
    assert!(!got.to_string().contains("s3://my-bucket"), "{got}");
}

/// Each mistake gets one clear message; a value that would inject a setting is refused.
pub(crate) fn lib_cache_errors(nix: Nix) {
    let ok = |url: &str| json!({"url": url, "publicKeys": [], "route": null, "netrcFile": null});
    let with = |url: &str, field: &str, value: Value| {
        let mut c = ok(url);
        c[field] = value;
        c
    };
    let https = "https://c.example.org";
    let cases: Vec<(Value, Value, &str)> = vec![
        (
            json!({"Bad_Name": ok(https)}),
            json!([]),
            "the name must be 1-63 characters",
        ),
        (
            json!({"c": ok("ftp://c.example.org")}),
            json!([]),
            "expected an https://, http:// or s3:// URL",
        ),
        (
            json!({"c": ok("https://c.example.org/#x")}),
            json!([]),
            "expected an https://, http:// or s3:// URL",
        ),
        (
            json!({"c": ok("https://c.example.org\nnetrc-file = /tmp/x")}),
            json!([]),
            "expected an https://, http:// or s3:// URL",
        ),
        (
            json!({"c": ok("https://c.example.org other")}),
            json!([]),
            "expected an https://, http:// or s3:// URL",
        ),
        (
            json!({"c": with(https, "route", json!("proxy"))}),
            json!([]),
            "\"proxy\" serves S3 caches",
        ),
        (
            json!({"c": with(https, "route", json!("sideways"))}),
            json!([]),
            "expected \"direct\" or \"proxy\"",
        ),
        (
            json!({"c": with(https, "publicKeys", json!(["no-colon"]))}),
            json!([]),
            "is not a public key",
        ),
        (
            json!({"c": with(https, "publicKeys", json!(["k-1:AAAA\nnetrc-file = /x"]))}),
            json!([]),
            "is not a public key",
        ),
        (
            json!({"c": with(https, "netrcFile", json!("etc/netrc"))}),
            json!([]),
            "expected an absolute path",
        ),
        (
            json!({"c": with(https, "netrcFile", json!("/nix/store/0000-netrc"))}),
            json!([]),
            "is in the Nix store",
        ),
        (
            json!({"c": with("s3://b", "netrcFile", json!("/etc/nix/netrc"))}),
            json!([]),
            "an S3 cache takes no netrc",
        ),
        (
            json!({"c": with(https, "proxyUsers", json!(["alice"]))}),
            json!([]),
            "only for S3 caches",
        ),
        (
            json!({"c": with("s3://b", "proxyUsers", json!(["a b"]))}),
            json!([]),
            "is not a user name",
        ),
        (
            json!({"c": ok(https)}),
            json!(["x;rm -rf /"]),
            "is not a user name",
        ),
        (
            json!({"a": with(https, "netrcFile", json!("/etc/nix/netrc")), "b": with("https://b.example.org", "netrcFile", json!("/run/netrc"))}),
            json!([]),
            "Nix reads one netrc-file, but the caches name 2",
        ),
    ];
    let input: Vec<Value> = cases
        .iter()
        .map(|(caches, users, _)| json!({"caches": caches, "serviceUsers": users}))
        .collect();
    let got = eval_ok(
        nix,
        "map (c: nsa.cacheErrors { inherit (c) caches serviceUsers; }) input",
        &Value::Array(input),
    );
    for (i, (caches, _, expected)) in cases.iter().enumerate() {
        let errors = got[i].as_array().unwrap();
        assert!(
            errors.len() == 1 && errors[0].as_str().unwrap().contains(expected),
            "{caches}: expected one error with {expected:?}, got {errors:?}"
        );
    }
    let services = eval_ok(
        nix,
        "map (ports: nsa.serviceErrors { inherit ports; }) input",
        &json!([
            {"alice": 20123, "bob": 20124},
            {"alice": 20123, "bob": 20123, "carol": 20124},
            {"a b": 1},
            {"alice": 0},
        ]),
    );
    assert_eq!(
        services,
        json!([
            [],
            [
                "programs.nixstore-auth.serviceUsers: alice, bob have the same port; each user's proxy needs its own"
            ],
            ["programs.nixstore-auth.serviceUsers: \"a b\" is not a user name"],
            [
                "programs.nixstore-auth.serviceUsers.alice.port: expected an integer from 1 to 65535, got 0"
            ],
        ])
    );
    let good = json!({"caches": sample_caches(), "serviceUsers": ["alice", "bob_2"]});
    assert_eq!(eval_ok(nix, "nsa.cacheErrors input", &good), json!([]));
}

/// Cache names and the user part of the root-only include file follow the tool's own rules.
pub(crate) fn lib_names(nix: Nix) {
    let users = [
        "alice", "Alice", "a_b.c", "--x--", "", "_", "Bob-1", "x.y", "ROOT", "a b", "9lives",
    ];
    let caches = [
        "cache-example-org",
        "-x",
        "X",
        "a_b",
        "",
        "0abc",
        "a--b",
        "my-bucket",
        "a.b",
        &"a".repeat(63),
        &"a".repeat(64),
    ];
    let got = eval_ok(
        nix,
        "{ sanitized = map nsa.sanitizeName input.users; valid = map nsa.validCacheName input.caches; }",
        &json!({"users": users, "caches": caches}),
    );
    let sanitized: Vec<String> = users
        .iter()
        .map(|u| nixstore_auth::cache::sanitize_name(u))
        .collect();
    assert_eq!(got["sanitized"], json!(sanitized));
    let valid: Vec<bool> = caches
        .iter()
        .map(|c| nixstore_auth::cache::validate_name(c).is_ok())
        .collect();
    assert_eq!(got["valid"], json!(valid));
}

/// `nix show-config` (2.8) / `nix config show` (2.34) as JSON with NIX_CONF_DIR and
/// XDG_CONFIG_HOME given; the settings and the warnings.
fn show_config(nix: Nix, conf_dir: &Path, config_home: &Path) -> (Value, Vec<String>) {
    let p = place(nix);
    let args: &[&str] = match nix {
        Nix::V2_8 => &[
            "--extra-experimental-features",
            "nix-command",
            "show-config",
            "--no-net",
            "--json",
        ],
        Nix::V2_34 => &[
            "--extra-experimental-features",
            "nix-command",
            "config",
            "show",
            "--json",
        ],
    };
    let ran = run_nix(
        nix,
        &p.repo(),
        "nix",
        args,
        &[
            ("NIX_CONF_DIR", conf_dir.display().to_string()),
            ("XDG_CONFIG_HOME", config_home.display().to_string()),
        ],
    )
    .expect_ok("nix show-config");
    let warnings = ran.warnings().into_iter().map(String::from).collect();
    (serde_json::from_str(&ran.stdout).unwrap(), warnings)
}

fn values(config: &Value, name: &str) -> Vec<String> {
    match &config[name]["value"] {
        Value::Array(v) => v.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
        Value::String(s) => vec![s.clone()],
        other => panic!("{name}: {other}"),
    }
}

/// Every fragment the modules render (system and user, with and without the service) is read
/// by this Nix without a warning, and means what it says.
pub(crate) fn nix_conf_fragments(nix: Nix) {
    let two_https = json!({
        "a": {"url": "https://a.example.org", "publicKeys": ["a-1:AAAA"], "route": null, "netrcFile": "/etc/nix/netrc", "proxyUsers": null},
        "b": {"url": "http://b.example.org:8080/cache", "publicKeys": [], "route": null, "netrcFile": "/etc/nix/netrc", "proxyUsers": null},
        "c": {"url": "s3://c?region=eu-west-1&endpoint=minio.example.org", "publicKeys": ["c-1:CCCC"], "route": null, "netrcFile": null, "proxyUsers": ["dave"]},
    });
    let rendered = eval_ok(
        nix,
        "map (c: let s = (if c.system then nsa.systemSettings { caches = c.caches; serviceUsers = [ \"alice\" ]; } else nsa.userSettings { caches = c.caches; service = c.service; }); in { inherit (s) settings errors; text = nsa.renderNixConf s; }) input",
        &json!([
            {"system": true, "caches": sample_caches(), "service": false},
            {"system": false, "caches": sample_caches(), "service": true},
            {"system": false, "caches": sample_caches(), "service": false},
            {"system": true, "caches": two_https, "service": false},
            {"system": false, "caches": two_https, "service": true},
            {"system": true, "caches": {}, "service": false},
        ]),
    );
    let p = place(nix);
    for case in rendered.as_array().unwrap() {
        assert_eq!(case["errors"], json!([]));
        let text = case["text"].as_str().unwrap();
        let (conf_inside, conf_host) = p.fresh("conf");
        let (home_inside, _) = p.fresh("config-home");
        std::fs::write(conf_host.join("nix.conf"), text).unwrap();
        let (config, warnings) = show_config(nix, &conf_inside, &home_inside);
        assert!(
            warnings.is_empty(),
            "Nix {} warns about\n{text}\n{warnings:?}",
            nix.id()
        );
        let settings = case["settings"].as_object().unwrap();
        for (name, value) in settings {
            let (real, wanted): (&str, Vec<String>) = match (name.as_str(), value) {
                (n, Value::Array(v)) => (
                    n.trim_start_matches("extra-"),
                    v.iter().map(|s| s.as_str().unwrap().to_string()).collect(),
                ),
                (n, Value::String(s)) => (n, vec![s.clone()]),
                other => panic!("{other:?}"),
            };
            let have = values(&config, real);
            for w in &wanted {
                assert!(
                    have.contains(w),
                    "{real}: {w} missing from {have:?} (Nix {})\n{text}",
                    nix.id()
                );
            }
        }
        if settings.is_empty() {
            assert!(text.is_empty(), "{text:?}");
        }
    }
}

/// home-manager's nix.conf is a symlink into the store: the relative `!include` still names
/// the file next to ~/.config/nix/nix.conf, where the tool writes it; while that file is
/// missing, Nix says nothing.
pub(crate) fn nix_conf_user_include(nix: Nix) {
    let rendered = eval_ok(
        nix,
        "nsa.renderNixConf (nsa.userSettings { caches = input; service = true; })",
        &sample_caches(),
    );
    let p = place(nix);
    let (store_inside, store_host) = p.fresh("fake-store");
    std::fs::write(store_host.join("hm-nix.conf"), rendered.as_str().unwrap()).unwrap();
    let (home_inside, home_host) = p.fresh("config-home");
    std::fs::create_dir_all(home_host.join("nix")).unwrap();
    std::os::unix::fs::symlink(
        store_inside.join("hm-nix.conf"),
        home_host.join("nix/nix.conf"),
    )
    .unwrap();
    let (empty_inside, _) = p.fresh("empty-conf-dir");

    let (config, warnings) = show_config(nix, &empty_inside, &home_inside);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        values(&config, "substituters").last().unwrap(),
        "https://cache.example.org"
    );

    let proxy_url = "http://127.0.0.1:20123/0123456789abcdef/my-bucket";
    std::fs::write(
        home_host.join("nix/nixstore-auth.conf"),
        format!("extra-substituters = {proxy_url}\n"),
    )
    .unwrap();
    let (config, warnings) = show_config(nix, &empty_inside, &home_inside);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(
        values(&config, "substituters").contains(&proxy_url.to_string()),
        "{}",
        config["substituters"]
    );
}
