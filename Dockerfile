# berth's container images, built from source. Targets:
#   docker (default)  for Docker and compose: HEALTHCHECK via `berth healthcheck`
#   k8s               for Kubernetes: no HEALTHCHECK (probes), USER 65532:65532
# Both run as 65532:65532 on a FROM scratch runtime holding only the binary, the glibc loader
# and libraries it links (copied from the builder, see deploy/docker/assemble-rootfs.sh), CA
# certificates and passwd/group entries.
#
#   docker build --target k8s -t berth:k8s \
#     --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
# or scripts/build-images.sh, which fills the labels and tags. Works with BuildKit/buildx and with
# the classic builder (DOCKER_BUILDKIT=0): no BuildKit-only syntax.

ARG RUST_IMAGE=rust:1.95-bookworm

# ---- dependency skeleton: manifests + empty crate roots, identical while no manifest changes
FROM ${RUST_IMAGE} AS skeleton
WORKDIR /src
COPY . .
RUN deploy/docker/cargo-skeleton.sh /src /skeleton

# ---- builder: dependencies in their own cached layer, then the sources
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# nft for the host guard's image, which berth builds on each engine (assemble-rootfs.sh).
RUN apt-get update && apt-get install -y --no-install-recommends nftables && rm -rf /var/lib/apt/lists/*
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
COPY --from=skeleton /skeleton/ ./
# Re-runs only when Cargo.toml/Cargo.lock files change: the third-party dependencies.
RUN cargo build --release --locked -p berth
COPY . .
# The stubs above are newer than the real sources' checkout times: touch the sources so Cargo
# rebuilds berth's own crates instead of keeping the stubs.
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p berth \
 && target/release/berth --version \
 && deploy/docker/assemble-rootfs.sh target/release/berth /out

FROM scratch AS rootfs
COPY --from=builder /out/ /

# ---- runtime: keep this section identical in Dockerfile and deploy/docker/prebuilt.Dockerfile
# (scripts/check-deploy.sh compares them). Only the binary, the libraries it loads, CA
# certificates, passwd/group/nsswitch.conf and an empty data directory: no shell, no package
# manager.
FROM scratch AS runtime
COPY --from=rootfs /rootfs/ /
# /datadir holds one empty directory, berth/: /var/lib/berth owned by berth, /var/lib by root.
COPY --from=rootfs --chown=65532:65532 /datadir/ /var/lib/
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
ARG SOURCE=https://github.com/berth-dev/berth
LABEL org.opencontainers.image.title="berth" \
      org.opencontainers.image.description="Short-lived container sandboxes on a Docker Engine" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}"
# Inside a container berth must listen on all interfaces; the data directory is the volume to
# keep (SQLite store and cluster id). SSL_CERT_FILE names the CA bundle for rustls.
ENV BERTH_LISTEN=0.0.0.0:8080 \
    BERTH_DATA_DIR=/var/lib/berth \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /var/lib/berth
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/berth"]
CMD ["serve"]

# Kubernetes: probes instead of a HEALTHCHECK; a fixed non-root UID/GID for runAsNonRoot;
# exec-form ENTRYPOINT so SIGTERM reaches berth (PID 1) directly.
FROM runtime AS k8s
USER 65532:65532

# Docker / compose (the default target): the engine itself checks health. `berth healthcheck`
# asks the local server's /readyz and exits 0 or 1 (there is no curl in the image).
FROM runtime AS docker
USER 65532:65532
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/berth", "healthcheck"]
