//! The conformance suite (`tests/conformance/`) against `--store redis`:
//! the same sources as the `conformance` target, which runs them against
//! `--store memory`. The suite picks its store from this target's name.

#[path = "conformance/main.rs"]
mod conformance;

// The suite names its helpers `crate::support::...`.
use conformance::support;
