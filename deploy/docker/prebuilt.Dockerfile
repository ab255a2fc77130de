# berth's runtime images from an already built binary, with no network: the build context is a
# directory prepared by `scripts/build-images.sh --prebuilt PATH` (out/rootfs and out/datadir,
# from deploy/docker/assemble-rootfs.sh). Targets as in the top-level Dockerfile: `docker`
# (default) and `k8s`.

FROM scratch AS rootfs
COPY out/ /

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
