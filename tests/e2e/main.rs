//! Every end-to-end proof, one module per area, each run against every Nix under test (see
//! tests/support/mod.rs and tests/support/nut.rs): the host's Debian 12 Nix 2.8 and Debian sid's
//! Nix 2.34 in a chroot. A test is named `AREA::PROOF::nix_VERSION`.
//!
//! The proofs change the machine (users, `/etc/nix`, the daemon), so they run only with
//! `CI=true` or `NIXSTORE_AUTH_E2E=1` (else each prints a skip line), as root, one at a time
//! under the machine-wide lock `/tmp/nixstore-auth-e2e.lock`:
//!
//! ```sh
//! sudo ./scripts/test.sh                                    # everything, both versions
//! NIXSTORE_AUTH_E2E=1 NIXSTORE_AUTH_TEST_NIX=2.34 cargo test --test e2e -- --test-threads=1
//! NIXSTORE_AUTH_E2E=1 cargo test --test e2e -- --test-threads=1 https::   # one area
//! ```
//! (`NIXSTORE_AUTH_VENV`, the venv with moto and boto3, is set by scripts/test.sh; the chroot is
//! made by `scripts/nix-chroot.sh ensure`, which the harness runs itself when needed.)

#[path = "../support/mod.rs"]
mod support;

mod aws;
mod builders;
mod doctor;
mod https;
mod keyring;
mod proxy;
mod push;
mod s3;
mod s3_security;
mod service;
mod sessions;
mod versions;
