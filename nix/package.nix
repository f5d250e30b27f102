# nixstore-auth, callPackage style: `pkgs.callPackage ./nix/package.nix { }`.
# The version is Cargo.toml's and the dependencies are Cargo.lock's (cargoLock.lockFile: no hash
# to update by hand). Needs a nixpkgs whose rustc meets Cargo.toml's rust-version.
{
  lib,
  rustPlatform,
  installShellFiles,
}:
let
  cargoToml = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  root = toString ../.;
  # What a build reads, and nothing else: a checkout's target/ (gigabytes), .git or a venv
  # must not be copied into the store by default.nix. tests/ is there because Cargo checks
  # the [[test]] targets Cargo.toml names.
  topLevel = [
    "Cargo.toml"
    "Cargo.lock"
    "src"
    "tests"
    "completions"
    "man"
    "README.md"
    "LICENSE"
  ];
in
rustPlatform.buildRustPackage {
  pname = "nixstore-auth";
  inherit (cargoToml.package) version;

  src = builtins.path {
    name = "nixstore-auth-source";
    path = ../.;
    filter = path: _type: dirOf path != root || builtins.elem (baseNameOf path) topLevel;
  };

  cargoLock.lockFile = ../Cargo.lock;

  # The keyring on Linux is the Secret Service over zbus (pure Rust, D-Bus at run time only);
  # TLS and SigV4 use rustls with aws-lc-rs, whose C part aws-lc-sys builds with its own cc
  # builder on Linux and Darwin targets (no cmake, no Go). On Darwin the Security and
  # SystemConfiguration frameworks come with the stdenv's default SDK (nixpkgs 24.11 and later;
  # the old darwin.apple_sdk.frameworks are stubs), so no buildInputs are needed there either.
  nativeBuildInputs = [ installShellFiles ];

  # doCheck: the unit tests only. The integration tests run the built binary against a real
  # nix-daemon, users and servers (tests/e2e), which a build sandbox has none of.
  cargoTestFlags = [ "--lib" ];

  postInstall = ''
    installShellCompletion --cmd nixstore-auth \
      --bash completions/nixstore-auth.bash \
      --zsh completions/_nixstore-auth \
      --fish completions/nixstore-auth.fish
    installManPage man/*.1
  '';

  meta = {
    inherit (cargoToml.package) description;
    license = lib.licenses.mit;
    mainProgram = "nixstore-auth";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
