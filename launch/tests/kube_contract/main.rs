//! The kubernetes backend against a fake API server, through kube's own
//! client over tower-test's mock service (the pattern kube-rs tests with).
//!
//! The fake answers as a real API server does, with real-shaped objects,
//! lists, newline-delimited watch events and Status bodies, and records
//! every request, so the tests assert the exact verbs, paths, query strings
//! and bodies the backend sends. No cluster is needed; the real-cluster
//! test is `kube_cluster.rs`, behind KUBECONFIG.
//!
//! By job: `fake` is the API server, `fixtures` what the tests start from,
//! then one module per theme of tests.

mod code_runs;
mod failures;
mod fake;
mod fixtures;
mod lifecycle;
mod objects;
mod offline;
mod rbac;
mod start;
