//! nix.conf parsing and editing (pending).
