# syntax=docker/dockerfile:1
# Konsil's container image: one image for every process kind (control plane, region
# service, Celery worker and beat, migrations, check-config), and a `media-node` target
# that adds coturn for the media nodes. helm/README.md says how to build and run both:
#   docker build -t konsil:0.1.0 .
#   docker build --target media-node -t konsil-media-node:0.1.0 .
# The image runs as uid/gid 10001 with a read-only root filesystem: the only writable
# path a process needs is /tmp (an emptyDir in the Helm charts).

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: wheels for the package and every dependency --------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package build reads (.dockerignore keeps tests, venvs and caches out).
COPY pyproject.toml README.md ./
COPY platform ./platform
COPY tenants ./tenants
COPY regions ./regions
COPY media_nodes ./media_nodes
COPY compliance ./compliance
# The network-test extra: the region service's pre-call connection test (aiortc).
RUN pip wheel --wheel-dir /wheels ".[network-test]"

# --- runtime: the wheels installed, nothing else ------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="konsil" \
      org.opencontainers.image.description="Region-sharded, end-to-end encrypted video consultations" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="proprietary"
# No .pyc written at run time (the root filesystem is read-only; pip compiled them at
# install), logs unbuffered, a home and working directory in the writable /tmp.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    KONSIL_CONFIG=/etc/konsil/konsil.toml
RUN groupadd --system --gid 10001 konsil \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin konsil
# The wheels come from the builder through a bind mount: they never become a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels "konsil[network-test]"
WORKDIR /tmp
USER 10001:10001
# 8080: the control plane's or a region service's HTTP port; 9464: Prometheus /metrics.
EXPOSE 8080 9464
ENTRYPOINT ["konsil"]
CMD ["--help"]

# --- media-node: the runtime plus Debian's coturn ------------------------------------------
FROM runtime AS media-node
LABEL org.opencontainers.image.title="konsil-media-node" \
      org.opencontainers.image.description="A Konsil media node: coturn and its agent"
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends coturn \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001
# TURN/STUN on 3478 (UDP and TCP), TURN over TLS on 5349; the relay range
# (--min-port..--max-port, 49152-65535 by default) is opened on the host (hostNetwork).
EXPOSE 3478/udp 3478/tcp 5349/tcp
CMD ["media-node", "run", "--help"]

# --- the default target: `docker build .` gives the image every other process runs -------
FROM runtime AS konsil
