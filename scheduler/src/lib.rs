//! Where kernels run, and (issue 4) who may have which GPU.
//!
//! Today this crate holds the launch side: the [`launcher::Launcher`] trait
//! the gateway calls, and the [`local::LocalLauncher`] backend that runs a
//! kernelspec's argv as a local process group. Admission and quotas will sit
//! in front of it; backends only execute, they never decide.

pub mod launcher;
pub mod local;

pub use launcher::{KernelLocator, KernelSignal, LaunchError, LaunchSpec, Launched, Launcher};
