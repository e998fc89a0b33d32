# syntax=docker/dockerfile:1
# The gateway image: the `lab` binary alone, non-root, on distroless.
# CUDA is loaded at run time if present (it is not, here: with the
# kubernetes backend, GPUs live in the kernel pods).
#
# Build context: the repository root.

ARG RUST_VERSION=1.95.0
FROM rust:${RUST_VERSION}-bookworm AS build
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
RUN cargo build --release --locked -p lab-gateway --bin lab \
 && strip target/release/lab

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/lab /usr/local/bin/lab
USER 65532:65532
EXPOSE 8888
ENTRYPOINT ["/usr/local/bin/lab"]
CMD ["serve", "--host", "0.0.0.0"]
