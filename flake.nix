{
  description = "nixstore-auth: private Nix binary caches (HTTPS and S3) that just work, also through the nix-daemon";

  # The only input. No flake.lock is committed: your Nix locks it on first use (or follow your
  # own nixpkgs: `inputs.nixstore-auth.inputs.nixpkgs.follows = "nixpkgs";`).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      # Builtins only, so that the outputs do not depend on which nixpkgs lib is at hand.
      forAllSystems =
        f:
        builtins.listToAttrs (
          map (system: {
            name = system;
            value = f system nixpkgs.legacyPackages.${system};
          }) systems
        );
    in
    {
      packages = forAllSystems (
        system: pkgs:
        let
          nixstore-auth = pkgs.callPackage ./nix/package.nix { };
        in
        {
          inherit nixstore-auth;
          default = nixstore-auth;
        }
      );

      overlays.default = final: prev: {
        nixstore-auth = final.callPackage ./nix/package.nix { };
      };

      # `import`: Nix 2.8 refuses a bare path as a module output.
      nixosModules.default = import ./nix/nixos-module.nix;
      nixosModules.nixstore-auth = self.nixosModules.default;

      homeModules.default = import ./nix/home-module.nix;
      homeModules.nixstore-auth = self.homeModules.default;
      # The older name, still read by home-manager's docs and many configurations.
      homeManagerModules = self.homeModules;

      # Building the package runs the unit tests (doCheck).
      checks = forAllSystems (system: pkgs: {
        nixstore-auth = self.packages.${system}.nixstore-auth;
      });

      devShells = forAllSystems (system: pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${system}.nixstore-auth ];
          # cargo, clippy, rustfmt, and what the test command runs (scripts/test.sh installs the
          # same on Debian with apt; the end-to-end proofs also need root and a nix-daemon).
          packages =
            with pkgs;
            [
              cargo
              clippy
              rustfmt
              rustc
              nix
              nginx
              apacheHttpd
              curl
              openssl
              jq
              hyperfine
              python3
              tmux
              zsh
              fish
            ]
            ++ lib.optionals stdenv.hostPlatform.isLinux [
              gnome-keyring
              dbus
              libsecret
              systemd
              debootstrap
            ];
        };
      });

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt-tree or pkgs.nixfmt-rfc-style);
    };
}
