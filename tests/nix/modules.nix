# For tests/flake.rs: evaluates one of this repository's modules the way a test can without
# nixpkgs' module system. The module function is called with the stub lib and pkgs and with a
# `config` the test gives (the option values the module system would have computed); mkIf and
# mkMerge (records in the stub lib) are resolved here.
#   import tests/nix/modules.nix { module = ./nix/nixos-module.nix; cfg = { enable = true; ... }; }
# Returns { options; config; } with config resolved to plain values.
{
  module,
  cfg,
  # home-manager's zsh options (whether `initContent` exists)
  options ? { },
  system ? "x86_64-linux",
}:
let
  pkgs = import ./stub-nixpkgs/default.nix { inherit system; };
  resolve =
    v:
    if builtins.isAttrs v && (v._type or null) == "if" then
      (if v.condition then resolve v.content else null)
    else if builtins.isAttrs v && (v._type or null) == "merge" then
      builtins.foldl' merge { } (map resolve v.contents)
    else if builtins.isAttrs v && !(v ? outPath) then
      let
        kept = builtins.filter (n: resolve v.${n} != null) (builtins.attrNames v);
      in
      builtins.listToAttrs (
        map (n: {
          name = n;
          value = resolve v.${n};
        }) kept
      )
    else
      v;
  merge =
    a: b:
    if b == null then
      a
    else
      a
      // builtins.mapAttrs (
        n: v: if a ? ${n} && builtins.isAttrs a.${n} && builtins.isAttrs v && !(v ? outPath) then merge a.${n} v else v
      ) b;
  evaluated = (import module) {
    inherit (pkgs) lib;
    inherit pkgs options;
    config.programs.nixstore-auth = cfg;
  };
in
{
  inherit (evaluated) options;
  config = resolve evaluated.config;
}
