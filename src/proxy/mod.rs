//! The loopback signing proxy for S3 caches (pending).
