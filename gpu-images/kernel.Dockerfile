# syntax=docker/dockerfile:1
# The kernel image: academy-rust and academy-candle with CUDA, run by the
# kubernetes backend as one pod per kernel (built by gpu-images/build).
#
# Build context: the repository root.

ARG CUDA_VERSION=13.0.0
ARG UBUNTU=ubuntu24.04
ARG RUST_VERSION=1.95.0

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
ARG RUST_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates build-essential pkg-config \
 && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/opt/rust/rustup CARGO_HOME=/opt/rust/cargo PATH=/opt/rust/cargo/bin:$PATH
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal \
      --default-toolchain ${RUST_VERSION} --component rust-src
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY kernel-runtime kernel-runtime
COPY lab-gateway lab-gateway
COPY scheduler scheduler
COPY launch launch
COPY lab-bench lab-bench
COPY handover handover
COPY classroom classroom
COPY third_party third_party
COPY .cargo .cargo
# Hopper (H100/H200); set CUDA_COMPUTE_CAP=80 for A100.
ARG CUDA_COMPUTE_CAP=90
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
RUN cargo build --release --locked -p kernel-runtime --features cuda --bin academy-kernel

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU}
# evcxr compiles each academy-rust cell with cargo and the system linker.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --create-home --home-dir /home/academy academy
COPY --from=build /opt/rust /opt/rust
COPY --from=build /src/target/release/academy-kernel /usr/local/bin/academy-kernel
ENV RUSTUP_HOME=/opt/rust/rustup CARGO_HOME=/opt/rust/cargo PATH=/opt/rust/cargo/bin:$PATH \
    XDG_CACHE_HOME=/opt/academy/cache HOME=/home/academy
# Pre-warm: compile candle once, as a first notebook would, so the evcxr
# compile cache and cargo's registry already hold it. Then all of CARGO_HOME
# goes to uid 10001, not only registry/: cargo's lock files (.package-cache,
# .global-cache) live beside it, and a kernel's `:dep` must take them.
COPY examples/02-candle-in-rust.ipynb /opt/academy/warmup.ipynb
RUN mkdir -p /opt/academy/cache \
 && academy-kernel execute /opt/academy/warmup.ipynb > /opt/academy/warmup.log 2>&1 \
 && chown -R 10001:10001 /opt/academy /opt/rust/cargo
USER 10001
WORKDIR /home/academy
# The kernel's five ZeroMQ ports; the backend writes them into the
# connection file it mounts from a Secret.
EXPOSE 9000-9004
ENTRYPOINT ["/usr/local/bin/academy-kernel"]
