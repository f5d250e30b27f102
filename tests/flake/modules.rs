//! The NixOS and home-manager modules, called with the stub lib (tests/nix/modules.nix): they
//! hand their options to nix/lib.nix and put the results where NixOS and home-manager read them.

use super::*;

/// The NixOS module hands its options to lib.nix and puts the results where NixOS reads them.
pub(crate) fn modules_nixos(nix: Nix) {
    let expr = r#"let
        stub = import ./tests/nix/stub-nixpkgs { };
        package = stub.callPackage ./nix/package.nix { };
        cfg = input // { inherit package; };
        eval = cfg: import ./tests/nix/modules.nix { module = ./nix/nixos-module.nix; inherit cfg; };
        on = eval cfg;
        opts = on.options.programs.nixstore-auth;
        generator = stub.writeShellScript "nixstore-auth-user-units" (nsa.generatorScript {
          coreutils = "${stub.coreutils}/bin";
          bin = "${package}/bin/nixstore-auth";
          ports = { alice = 20123; bob = 20456; };
        });
      in {
        inherit (on.config) nix assertions;
        packages = map (p: p.name) on.config.environment.systemPackages;
        generatorIsTheRenderedOne = on.config.systemd.user.generators.nixstore-auth == "${generator}";
        noService = (eval (cfg // { serviceUsers = { }; })).config.systemd.user;
        off = (eval (cfg // { enable = false; })).config;
        bad = (eval (cfg // { caches.c = { url = "ftp://x"; publicKeys = [ ]; route = null; netrcFile = null; proxyUsers = null; }; })).config.assertions;
        clash = (eval (cfg // { serviceUsers = { alice.port = 20123; bob.port = 20123; }; })).config.assertions;
        options = builtins.attrNames opts;
        cacheFields = builtins.attrNames opts.caches.type.elem.options;
        portType = opts.serviceUsers.type.elem.options.port.type.name;
        defaultPackage = opts.package.default.pname;
      }"#;
    let got = eval_ok(
        nix,
        expr,
        &json!({"enable": true, "caches": sample_caches(), "serviceUsers": {"alice": {"port": 20123}, "bob": {"port": 20456}}}),
    );
    let system = eval_ok(
        nix,
        "nsa.systemSettings { caches = input; serviceUsers = [ \"alice\" \"bob\" ]; }",
        &sample_caches(),
    );
    assert_eq!(got["nix"]["settings"], system["settings"]);
    assert_eq!(got["nix"]["extraOptions"], system["extraOptions"]);
    assert_eq!(got["assertions"], json!([]));
    assert_eq!(
        got["packages"],
        json!([format!("nixstore-auth-{}", env!("CARGO_PKG_VERSION"))])
    );
    assert_eq!(got["generatorIsTheRenderedOne"], json!(true));
    assert_eq!(got["noService"], json!({}));
    assert_eq!(got["off"], Value::Null);
    let bad = got["bad"].as_array().unwrap();
    assert!(
        bad.len() == 1
            && bad[0]["assertion"] == json!(false)
            && bad[0]["message"]
                .as_str()
                .unwrap()
                .contains("programs.nixstore-auth.caches.c.url"),
        "{bad:?}"
    );
    assert_eq!(
        got["clash"],
        json!([{"assertion": false, "message": "programs.nixstore-auth.serviceUsers: alice, bob have the same port; each user's proxy needs its own"}])
    );
    assert_eq!(
        got["options"],
        json!(["caches", "enable", "package", "serviceUsers"])
    );
    assert_eq!(
        got["cacheFields"],
        json!(["netrcFile", "proxyUsers", "publicKeys", "route", "url"])
    );
    assert_eq!(got["portType"], json!("port"));
    assert_eq!(got["defaultPackage"], json!("nixstore-auth"));
}

/// The home-manager module: the user's settings with the `!include` line, the tool's own unit
/// files where the tool writes them (enabled), the shell lines, and nothing it was not asked for.
pub(crate) fn modules_home_manager(nix: Nix) {
    let expr = r#"let
        stub = import ./tests/nix/stub-nixpkgs { };
        package = stub.callPackage ./nix/package.nix { };
        cfg = input // { inherit package; };
        evalOn = system: cfg: options: import ./tests/nix/modules.nix { module = ./nix/home-module.nix; inherit cfg options system; };
        eval = evalOn "x86_64-linux";
        newHm = { programs.zsh.initContent = { }; };
        on = eval cfg newHm;
        opts = on.options.programs.nixstore-auth;
        bare = (eval (cfg // { caches = { }; service.enable = false; enableBashIntegration = false; enableZshIntegration = false; enableFishIntegration = false; }) newHm).config;
      in {
        inherit (on.config) nix assertions;
        bin = "${package}/bin/nixstore-auth";
        packages = map (p: p.name) on.config.home.packages;
        files = builtins.mapAttrs (_: f: f.source.stubText) on.config.xdg.configFile;
        bash = on.config.programs.bash.initExtra;
        zsh = on.config.programs.zsh;
        oldZsh = (eval cfg { programs.zsh.initExtra = { }; }).config.programs.zsh;
        fish = on.config.programs.fish.interactiveShellInit;
        bare = builtins.removeAttrs bare [ "home" "assertions" ];
        darwin = map (a: a.message) (builtins.filter (a: !a.assertion) (evalOn "aarch64-darwin" cfg newHm).config.assertions);
        darwinNoService = builtins.filter (a: !a.assertion) (evalOn "aarch64-darwin" (cfg // { service.enable = false; }) newHm).config.assertions;
        options = builtins.attrNames opts;
        serviceOptions = builtins.attrNames opts.service;
        cacheFields = builtins.attrNames opts.caches.type.elem.options;
      }"#;
    let cfg = json!({
        "enable": true, "caches": sample_caches(),
        "service": {"enable": true, "port": 20123},
        "enableBashIntegration": true, "enableZshIntegration": true, "enableFishIntegration": true,
    });
    let got = eval_ok(nix, expr, &cfg);
    let user = eval_ok(
        nix,
        "nsa.userSettings { caches = input; service = true; }",
        &sample_caches(),
    );
    assert_eq!(got["nix"]["settings"], user["settings"]);
    assert_eq!(
        got["nix"]["extraOptions"],
        json!("!include nixstore-auth.conf\n")
    );
    assert!(
        got["assertions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["assertion"] == json!(true)),
        "{}",
        got["assertions"]
    );
    // The units are systemd's: on macOS the module says to use the tool's LaunchAgent.
    assert_eq!(
        got["darwin"],
        json!([
            "programs.nixstore-auth.service: the units are systemd's (Linux); on macOS run `nixstore-auth service install`"
        ])
    );
    assert_eq!(got["darwinNoService"], json!([]));
    assert_eq!(
        got["packages"],
        json!([format!("nixstore-auth-{}", env!("CARGO_PKG_VERSION"))])
    );
    let bin = got["bin"].as_str().unwrap();
    let units = expected_units(bin, 20123);
    assert_eq!(
        got["files"],
        json!({
            "systemd/user/nixstore-auth-proxy.socket": units["nixstore-auth-proxy.socket"],
            "systemd/user/nixstore-auth-proxy.service": units["nixstore-auth-proxy.service"],
            "systemd/user/sockets.target.wants/nixstore-auth-proxy.socket": units["nixstore-auth-proxy.socket"],
        })
    );
    assert_eq!(
        got["bash"],
        json!(format!("eval \"$({bin} shell-init bash)\""))
    );
    assert_eq!(
        got["zsh"],
        json!({"initContent": format!("eval \"$({bin} shell-init zsh)\"")})
    );
    assert_eq!(
        got["oldZsh"],
        json!({"initExtra": format!("eval \"$({bin} shell-init zsh)\"")})
    );
    assert_eq!(
        got["fish"],
        json!(format!("{bin} shell-init fish | source"))
    );
    // Nothing set that was not asked for: no nix.conf (home-manager would then demand
    // nix.package), no units, no shell lines.
    assert_eq!(
        got["bare"],
        json!({"nix": {}, "programs": {"bash": {}, "fish": {}}})
    );
    assert_eq!(
        got["options"],
        json!([
            "caches",
            "enable",
            "enableBashIntegration",
            "enableFishIntegration",
            "enableZshIntegration",
            "package",
            "service"
        ])
    );
    assert_eq!(got["serviceOptions"], json!(["enable", "port"]));
    assert_eq!(
        got["cacheFields"],
        json!(["netrcFile", "publicKeys", "route", "url"])
    );
}
