//! Secret storage: OS keyring with a 0600-file fallback (pending).
