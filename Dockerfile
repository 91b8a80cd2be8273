# The wharfjobs image: every role runs from it (`wharfjobs provisioner`,
# `aggregator`, `worker`, the step pods' `workspace-fetch` and `step-exec`).
#
#   make image           # bin/wharfjobs, then this build: wharfjobs:<version> and wharfjobs:latest
#   make image-tarball   # bin/wharfjobs-<version>.tar for docker load / ctr import
#
# The binary is not built here: `make build` builds the static bin/wharfjobs
# (CGO_ENABLED=0, -trimpath, the version from git describe) outside and this
# file COPYs it. A Go build stage would need a Go toolchain image from a
# registry, which the machines that build and test this image cannot reach;
# and so the image holds exactly the binary `make build` made and tested,
# built once, not a second build with another toolchain.
#
# The runtime is FROM scratch with only what the binary runs: git (the
# worker clones the repository with it, over https with a credential helper
# that git runs through /bin/sh), the shared libraries git and its https
# helper load, CA certificates, /etc/passwd and /etc/group entries for the
# non-root user 65532, and a writable /tmp as HOME. No package manager, no
# coreutils.

# The Debian that git and its libraries come from. Without a registry:
# `make debian-base`, then `docker import .cache/debian-bookworm-minbase.tar
# debian:bookworm-slim` (what the image's test does), or import it under
# another name and pass --build-arg BASE=<name> (make image IMAGE_BASE=<name>).
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS deps
RUN set -eu; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends git ca-certificates >/dev/null; \
    rm -rf /var/lib/apt/lists/*
# Collect the runtime into /out:
# - /usr/lib/git-core/git (git's own exec path: git runs its subcommands
#   from there, and `git clone` runs `git index-pack`, `git fetch-pack` and,
#   for a local repository, `git-upload-pack` that way), the symbolic links
#   of its built-in commands, and /usr/bin/git as a link to it;
# - git-remote-http, the https transport (git-remote-https is a link to it);
# - dash as /bin/sh: git runs a "!" credential helper with /bin/sh -c
#   (job/worker/git.go; the helper uses only shell built-ins);
# - the libraries ldd lists for these three, at their real paths, with the
#   merged-/usr links (/bin, /lib, /lib64 -> usr/...) as in Debian;
# - an empty template directory (git init and clone warn without one), CA
#   certificates, passwd and group, nsswitch.conf (/etc/hosts before DNS,
#   as on Debian) and /tmp with mode 1777.
RUN set -eu; \
    for d in bin sbin lib lib32 lib64 libx32; do \
      if [ -L "/$d" ]; then mkdir -p "/out/$(readlink "/$d")"; ln -s "$(readlink "/$d")" "/out/$d"; fi; \
    done; \
    mkdir -p /out/usr/bin /out/usr/lib/git-core /out/usr/share/git-core/templates /out/etc/ssl/certs /out/tmp; \
    cp /usr/lib/git-core/git /usr/lib/git-core/git-remote-http /out/usr/lib/git-core/; \
    for f in /usr/lib/git-core/*; do \
      if [ -L "$f" ]; then t=$(readlink "$f"); case "$t" in git|git-remote-http) ln -s "$t" "/out$f";; esac; fi; \
    done; \
    ln -s ../lib/git-core/git /out/usr/bin/git; \
    cp /usr/bin/dash /out/usr/bin/dash; \
    ln -s dash /out/usr/bin/sh; \
    for b in /usr/lib/git-core/git /usr/lib/git-core/git-remote-http /usr/bin/dash; do ldd "$b"; done \
      | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u \
      | while read -r lib; do \
          dir=$(readlink -f "$(dirname "$lib")"); mkdir -p "/out$dir"; cp -L "$lib" "/out$dir/"; \
        done; \
    cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/; \
    printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/usr/sbin/nologin\n' >/out/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' >/out/etc/group; \
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >/out/etc/nsswitch.conf; \
    chmod 1777 /out/tmp

FROM scratch
COPY --from=deps /out/ /
COPY bin/wharfjobs /usr/local/bin/wharfjobs
# HOME=/tmp: git reads $HOME/.gitconfig, and the image has no home
# directory. SSL_CERT_FILE for the Go binary (its default path is the same
# file) and whatever else reads it.
ENV PATH=/usr/local/bin:/usr/bin \
    HOME=/tmp \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
WORKDIR /tmp
USER 65532:65532
ENTRYPOINT ["wharfjobs"]

# Last, so that a new version or build time changes only these layers.
# The Makefile fills them: VERSION from `git describe --tags --always
# --dirty`, REVISION from `git rev-parse HEAD`, CREATED the build's UTC time
# (RFC 3339). The repository has no license file yet: LICENSES stays
# NOASSERTION (SPDX) until it has one.
ARG VERSION=devel
ARG REVISION=unknown
ARG CREATED=
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="wharfjobs" \
      org.opencontainers.image.description="wharfjobs, the build engine behind Wharf CI: provisioner, aggregator, build worker and step helpers in one image" \
      org.opencontainers.image.source="https://github.com/wharfjobs/wharfjobs" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
