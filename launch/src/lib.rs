//! How kernels are started, signalled and stopped: the [`launcher::Launcher`]
//! trait and its backends.
//!
//! This crate only executes what admission (the `scheduler` crate) already
//! decided: no backend changes a quota or picks a GPU. It depends on
//! `scheduler` (Kueue's objects are rendered from the inventory and the
//! quotas), never the other way, so the policy and `lab simulate` build
//! without Kubernetes or Landlock.
//!
//! [`launcher`] knows no backend; [`local`] runs a process tree per kernel,
//! confined by [`sandbox`]; [`kube`] runs a pod per kernel.

pub mod kube;
pub mod launcher;
pub mod local;
pub mod sandbox;

pub use launcher::{
    KernelLocator, KernelSignal, LaunchError, LaunchSpec, Launched, Launcher, ReadOnlyMount,
};
