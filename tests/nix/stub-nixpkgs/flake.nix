# A stand-in for nixpkgs, for tests/flake.rs only: `nix flake check --no-build --override-input
# nixpkgs path:tests/nix/stub-nixpkgs` evaluates this repository's flake offline against it
# (no nixpkgs can be had on the test machines). Nothing here builds: every derivation's builder
# fails. rustPlatform.buildRustPackage keeps its arguments (`stubArgs`) so that the tests can
# assert what nix/package.nix gives it.
{
  description = "stub nixpkgs for nixstore-auth's flake tests";
  outputs =
    { self }:
    {
      lib = import ./lib.nix;
      legacyPackages = builtins.listToAttrs (
        map
          (system: {
            name = system;
            value = import ./default.nix { inherit system; };
          })
          [
            "x86_64-linux"
            "aarch64-linux"
            "x86_64-darwin"
            "aarch64-darwin"
          ]
      );
    };
}
