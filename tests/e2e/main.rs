//! Every end-to-end proof, one module per area, each run against every Nix under test (see
//! tests/support/mod.rs and tests/support/nut.rs): the host's Debian 12 Nix 2.8 and Debian sid's
//! Nix 2.34 in a chroot. A test is named `AREA::PROOF::nix_VERSION`.
//!
//! The proofs change the machine (users, `/etc/nix`, the daemon), so they run only with
//! `CI=true` or `NIXSTORE_AUTH_E2E=1` (else each is reported as ignored), as root, one at a time
//! under the machine-wide lock `/tmp/nixstore-auth-e2e.lock`. The harness is libtest-mimic
//! (tests/support/harness.rs): libtest's options work as usual.
//!
//! ```sh
//! sudo ./scripts/test.sh                                    # everything, both versions
//! NIXSTORE_AUTH_E2E=1 NIXSTORE_AUTH_TEST_NIX=2.34 cargo test --test e2e
//! NIXSTORE_AUTH_E2E=1 cargo test --test e2e -- https::      # one area
//! cargo test --test e2e -- --list                           # every proof, nothing run
//! ```
//! (`NIXSTORE_AUTH_VENV`, the venv with moto and boto3, is set by scripts/test.sh; the chroot is
//! made by `scripts/nix-chroot.sh ensure`, which the harness runs itself when needed.)

#[path = "../support/mod.rs"]
mod support;

// Every area, in one list: it declares each module (tests/e2e/AREA.rs, which ends with
// `crate::proofs!(...)`) and hands its proofs to the harness.
crate::areas!(
    aws,
    builders,
    clouds,
    doctor,
    https,
    https_proxy,
    keyring,
    proxy,
    push,
    s3,
    s3_security,
    s3_stores,
    service,
    sessions,
    versions,
);
