//! netrc parsing and editing (pending).
