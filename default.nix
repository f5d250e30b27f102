# nixstore-auth for Nix without flakes: `nix-build`, `nix-env -f . -i`, or
# `pkgs.callPackage ./nix/package.nix { }` from your own configuration. The modules are
# nix/nixos-module.nix and nix/home-module.nix (add them to `imports`).
{
  pkgs ? import <nixpkgs> { },
}:
pkgs.callPackage ./nix/package.nix { }
