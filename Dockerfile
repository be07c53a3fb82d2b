# kreload as a small static, non-root image. It is not built here (no container engine in this
# environment or in CI); build it where Docker or Podman runs:
#   docker build -t REGISTRY/kreload:0.1.0 .
FROM rust:1.95-alpine AS build
# Alpine's Rust targets musl and links statically; ring needs the C toolchain's musl headers.
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
RUN CARGO_PROFILE_RELEASE_STRIP=true cargo build --release --locked --bin kreload

FROM gcr.io/distroless/static:nonroot
COPY --from=build /src/target/release/kreload /kreload
USER 65532:65532
ENTRYPOINT ["/kreload"]
CMD ["run"]
