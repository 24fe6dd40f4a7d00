//! DNS providers (work in progress).
