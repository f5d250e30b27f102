# home-manager module: `programs.nixstore-auth`. The package (with its completions), the caches
# in the user's ~/.config/nix/nix.conf, the background proxy's user units with the `!include`
# line, and the shell integration for bash, zsh and fish. Thin over ./lib.nix (tested there).
#
# A user-level nix.conf counts for the nix-daemon only if the user is trusted (`trusted-users`),
# or for caches the system lists in `trusted-substituters` (the NixOS module does that for HTTPS
# caches). home-manager writes nix.conf only with `nix.package` set (it asserts so).
# Use: the flake's `homeModules.default`, or `imports = [ /path/to/nixstore-auth/nix/home-module.nix ];`.
{
  config,
  lib,
  pkgs,
  options,
  ...
}:
let
  nsa = import ./lib.nix;
  cfg = config.programs.nixstore-auth;
  inherit (lib) mkOption types;
  bin = lib.getExe cfg.package;
  rendered = nsa.userSettings {
    inherit (cfg) caches;
    service = cfg.service.enable;
  };
  unitFiles = lib.mapAttrs (name: text: pkgs.writeText name text) (
    nsa.units {
      inherit bin;
      inherit (cfg.service) port;
    }
  );
  zshInit = nsa.shellInit {
    inherit bin;
    shell = "zsh";
  };
in
{
  options.programs.nixstore-auth = {
    enable = lib.mkEnableOption "nixstore-auth, private Nix binary caches (HTTPS and S3) that also work through the nix-daemon";

    package = mkOption {
      type = types.package;
      default = pkgs.nixstore-auth or (pkgs.callPackage ./package.nix { });
      defaultText = lib.literalExpression "pkgs.nixstore-auth (with the flake's overlay), else this repository's nix/package.nix";
      description = "The nixstore-auth package (its completions and man pages come with it).";
    };

    caches = mkOption {
      type = types.attrsOf (import ./cache-options.nix {
        inherit lib;
        system = false;
      });
      default = { };
      description = ''
        Private caches, by name, for your own nix.conf: HTTPS caches in `extra-substituters`,
        every cache's keys in `extra-trusted-public-keys`, a token through `netrcFile`. These
        settings reach the nix-daemon only if you are a trusted user, or the system lists the
        cache in `trusted-substituters`: a user-level module cannot make an untrusted user's
        substituters count (use the NixOS module, or ask an administrator).
      '';
    };

    service = {
      enable = mkOption {
        type = types.bool;
        default = false;
        description = ''
          The background proxy for S3 caches: the socket-activated user units
          `nixstore-auth-proxy.socket` and `.service` (the same files `nixstore-auth service
          install` writes) and the line `!include nixstore-auth.conf` in your nix.conf. That
          file holds the proxy's secret URL and is the tool's to write (mode 0600):
          `nixstore-auth service install` (or `use`, `login`) writes it.
        '';
      };
      port = mkOption {
        type = types.port;
        example = 20123;
        description = ''
          Your proxy's port: it must be the port your nixstore-auth proxy uses (`[proxy] port =
          PORT` in ~/.config/nixstore-auth/config.toml; `nixstore-auth proxy status` shows it).
        '';
      };
    };

    enableBashIntegration = mkOption {
      type = types.bool;
      default = true;
      description = "Run Nix commands in bash through `nixstore-auth exec` (`nixstore-auth shell-init bash`).";
    };
    enableZshIntegration = mkOption {
      type = types.bool;
      default = true;
      description = "Run Nix commands in zsh through `nixstore-auth exec` (`nixstore-auth shell-init zsh`).";
    };
    enableFishIntegration = mkOption {
      type = types.bool;
      default = true;
      description = "Run Nix commands in fish through `nixstore-auth exec` (`nixstore-auth shell-init fish`).";
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions =
          map (message: {
            assertion = false;
            inherit message;
          }) rendered.errors
          ++ [
            {
              # The tool's macOS route is a LaunchAgent (`nixstore-auth service install`).
              assertion = !cfg.service.enable || pkgs.stdenv.hostPlatform.isLinux;
              message = "programs.nixstore-auth.service: the units are systemd's (Linux); on macOS run `nixstore-auth service install`";
            }
          ];

        home.packages = [ cfg.package ];

        # Only when there is something to say: home-manager asserts `nix.package` once set.
        nix.settings = lib.mkIf (rendered.settings != { }) rendered.settings;
        nix.extraOptions = lib.mkIf (rendered.extraOptions != "") rendered.extraOptions;

        programs.bash.initExtra = lib.mkIf cfg.enableBashIntegration (nsa.shellInit {
          inherit bin;
          shell = "bash";
        });
        # home-manager 25.05 renamed zsh's initExtra to initContent.
        programs.zsh = lib.mkIf cfg.enableZshIntegration (
          if options.programs.zsh ? initContent then { initContent = zshInit; } else { initExtra = zshInit; }
        );
        programs.fish.interactiveShellInit = lib.mkIf cfg.enableFishIntegration (nsa.shellInit {
          inherit bin;
          shell = "fish";
        });
      }

      # The tool's own unit files, byte for byte, where the tool writes them; enabled the way
      # `systemctl --user enable` does (a link in sockets.target.wants).
      (lib.mkIf cfg.service.enable {
        xdg.configFile = {
          "systemd/user/${nsa.unitNames.socket}".source = unitFiles.${nsa.unitNames.socket};
          "systemd/user/${nsa.unitNames.service}".source = unitFiles.${nsa.unitNames.service};
          "systemd/user/sockets.target.wants/${nsa.unitNames.socket}".source = unitFiles.${nsa.unitNames.socket};
        };
      })
    ]
  );
}
