//! Shared pieces of the Squadlink examples and benchmark binaries.
//!
//! The binaries themselves live in `src/bin/`; each one's header says what it shows and how
//! to run it.

pub mod bench;
