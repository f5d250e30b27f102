# NixOS module: `programs.nixstore-auth`. The package, the caches in the system's nix.conf
# (never a secret in the store) and the background proxy's user units for the users listed in
# `serviceUsers`. Thin over ./lib.nix, where every rendering and check lives (tested there).
# Use: the flake's `nixosModules.default`, or `imports = [ /path/to/nixstore-auth/nix/nixos-module.nix ];`.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  nsa = import ./lib.nix;
  cfg = config.programs.nixstore-auth;
  inherit (lib) mkOption types;
  rendered = nsa.systemSettings {
    inherit (cfg) caches;
    serviceUsers = builtins.attrNames cfg.serviceUsers;
  };
  generator = pkgs.writeShellScript "nixstore-auth-user-units" (
    nsa.generatorScript {
      coreutils = "${pkgs.coreutils}/bin";
      bin = lib.getExe cfg.package;
      ports = lib.mapAttrs (_: u: u.port) cfg.serviceUsers;
    }
  );
in
{
  options.programs.nixstore-auth = {
    enable = lib.mkEnableOption "nixstore-auth, private Nix binary caches (HTTPS and S3) that also work through the nix-daemon";

    package = mkOption {
      type = types.package;
      default = pkgs.nixstore-auth or (pkgs.callPackage ./package.nix { });
      defaultText = lib.literalExpression "pkgs.nixstore-auth (with the flake's overlay), else this repository's nix/package.nix";
      description = "The nixstore-auth package.";
    };

    caches = mkOption {
      type = types.attrsOf (import ./cache-options.nix {
        inherit lib;
        system = true;
      });
      default = { };
      example = lib.literalExpression ''
        {
          cache-example-org = {
            url = "https://cache.example.org";
            publicKeys = [ "cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
            netrcFile = "/run/secrets/nix-netrc";
          };
          my-bucket = {
            url = "s3://my-bucket?region=eu-west-1";
            publicKeys = [ "my-bucket-1:BASE64=" ];
          };
        }
      '';
      description = ''
        Private caches, by name (the names `nixstore-auth use` gives: a-z, 0-9, `-`). HTTPS
        caches go into `extra-substituters` and `extra-trusted-substituters`, their keys into
        `extra-trusted-public-keys`, the token through `netrcFile`. S3 caches reach the daemon
        through each user's proxy: their keys are added, and the proxy URLs come from root-only
        files (see `proxyUsers`).
      '';
    };

    serviceUsers = mkOption {
      type = types.attrsOf (
        types.submodule {
          options.port = mkOption {
            type = types.port;
            example = 20123;
            description = ''
              The user's proxy port: it must be the port the user's nixstore-auth proxy uses
              (`[proxy] port = PORT` in ~/.config/nixstore-auth/config.toml; `nixstore-auth
              proxy status` shows it).
            '';
          };
        }
      );
      default = { };
      example = {
        alice.port = 20123;
      };
      description = ''
        Users whose background proxy runs as a socket-activated systemd user service
        (`nixstore-auth-proxy.socket` and `.service`, the same units `nixstore-auth service
        install` writes), each on their own port. The units come from a user generator, so
        they exist for these users only. The `!include nixstore-auth.conf` line in the user's
        own nix.conf and the file it names (the proxy's secret URL) are the tool's to write:
        `nixstore-auth service install`, run by the user.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = map (message: {
      assertion = false;
      inherit message;
    }) (rendered.errors ++ nsa.serviceErrors { ports = lib.mapAttrs (_: u: u.port) cfg.serviceUsers; });

    environment.systemPackages = [ cfg.package ];

    nix.settings = rendered.settings;
    # `!include` lines cannot be settings; a missing file is skipped by Nix.
    nix.extraOptions = rendered.extraOptions;

    # NixOS 24.11 and later. A NixOS user unit would be the same for every user, each user's
    # proxy has its own port: the generator writes the units for the listed users only.
    systemd.user.generators = lib.mkIf (cfg.serviceUsers != { }) {
      nixstore-auth = "${generator}";
    };
  };
}
