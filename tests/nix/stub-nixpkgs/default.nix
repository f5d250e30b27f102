# The stub's package set for one system (see flake.nix): what this repository's flake, package
# and modules take from pkgs, as derivations that never build.
{
  system ? builtins.currentSystem,
}:
let
  lib = import ./lib.nix;
  fails = name: extra:
    derivation (
      {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-c"
          "echo 'stub nixpkgs: nothing builds here' >&2; exit 1"
        ];
      }
      // extra
    );
  tool = name: fails "stub-${name}" { };
  tools = builtins.listToAttrs (
    map (name: {
      inherit name;
      value = tool name;
    }) [
      "apacheHttpd"
      "cargo"
      "clippy"
      "coreutils"
      "curl"
      "dbus"
      "debootstrap"
      "fish"
      "gnome-keyring"
      "hyperfine"
      "installShellFiles"
      "jq"
      "libsecret"
      "nginx"
      "nix"
      "nixfmt-tree"
      "openssl"
      "python3"
      "rustc"
      "rustfmt"
      "systemd"
      "tmux"
      "zsh"
    ]
  );
  isDarwin = builtins.match ".*-darwin" system != null;
  pkgs = tools // {
    inherit lib;
    stdenv.hostPlatform = {
      inherit system isDarwin;
      isLinux = !isDarwin;
    };
    callPackage =
      fn: overrides:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);
    # Every argument is forced, as a real derivation forces its attributes.
    rustPlatform.buildRustPackage =
      args:
      fails "${args.pname}-${args.version}" { stubArgs = builtins.toJSON args; }
      // {
        inherit (args) pname version meta;
        stubArgs = args;
      };
    mkShell =
      args:
      fails "stub-shell" { stubArgs = builtins.toJSON args; }
      // {
        stubArgs = args;
      };
    writeText =
      name: text:
      fails name { }
      // {
        stubText = text;
      };
    writeShellScript =
      name: text:
      fails name { }
      // {
        stubText = text;
      };
  };
in
pkgs
