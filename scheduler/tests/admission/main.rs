//! Admission: scenarios, and property tests over random sequences of
//! requests, releases, cancels, quota edits and time.
//!
//! `helpers` builds requests and quotas; `scenarios` and `properties` are
//! the tests.

mod helpers;
mod properties;
mod scenarios;
