//! What a kernel pod looks like: pure functions from a launch to the objects
//! the API server receives, so every field can be tested without a cluster.
//!
//! The pod meets the restricted Pod Security Standard, gets no service
//! account token, holds its GPUs as limits only, and reads its connection
//! file (with the HMAC key) from a Secret the pod owns, never from its spec.
//!
//! By job: [`names`] says what objects are called and how they are
//! labelled, [`kernel`] builds a kernel's Pod and Secret, [`namespace`]
//! what a user's kernels need beside them.

pub mod kernel;
pub mod names;
pub mod namespace;

pub use kernel::*;
pub use names::*;
pub use namespace::*;
