//! In-process tests of the kernel layer (see fixtures).
