# syntax=docker/dockerfile:1.7
#
# memelearning images: one file, two runtime targets.
#
#   docker build --target cpu -t memelearning:cpu .   # tensorflow-cpu (the default target)
#   docker build --target gpu -t memelearning:gpu .   # tensorflow[and-cuda]
#   docker build --target cpu-lite -t memelearning:cpu-lite .  # LiteRT only, no TensorFlow
#
# cpu and gpu run every memelearning process (`worker`, `reactions serve`, `publish`);
# the command picks which. The worker's model is baked in at /opt/memelearning/model:
# models/default from the build context when it exists (the trained gesture detector),
# otherwise the colour PLUMBING model (red/green/blue, NOT a gesture detector);
# /opt/memelearning/model/MODEL_KIND says which one the image holds.
#
# The GPU target needs no CUDA base image: tensorflow[and-cuda] installs CUDA and cuDNN
# as pip wheels, so only the host's NVIDIA driver (nvidia-container-toolkit) is needed
# and both targets share the same slim Python base.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- base
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
# A fixed numeric uid/gid so Kubernetes can check runAsNonRoot without a passwd lookup.
RUN groupadd --system --gid 10001 memelearning \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/memelearning \
      --create-home --shell /usr/sbin/nologin memelearning

# ---------------------------------------------------------------------- build-base
FROM base AS build-base
RUN python -m venv "$VIRTUAL_ENV"
COPY pyproject.toml README.md /src/
# `requirements EXTRA...` prints the runtime requirement set (dependencies + extras)
# from pyproject.toml alone: dependencies then install in a layer that a code change
# does not invalidate, so editing a module does not re-download TensorFlow.
COPY --chmod=755 <<'PY' /usr/local/bin/requirements
#!/usr/local/bin/python
import sys, tomllib
project = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]
extras = [r for extra in sys.argv[1:] for r in project["optional-dependencies"][extra]]
print("\n".join(project["dependencies"] + extras))
PY
# `finish-install`: the package itself; then what is dead weight at run time (test
# suites and C headers inside wheels); then byte-code once, because the root
# filesystem is read-only at run time and would otherwise be recompiled every start.
COPY --chmod=755 <<'SH' /usr/local/bin/finish-install
#!/bin/sh
set -eu
pip install --no-compile --no-deps /src
site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
find "$site" -mindepth 2 -type d \( -name tests -o -name test \) -prune -exec rm -rf {} +
find "$site" -mindepth 2 -type d -name include -prune -exec rm -rf {} +
python -m compileall -q -j 0 "$site" >/dev/null || true
SH
COPY memelearning /src/memelearning
COPY publisher /src/publisher
COPY worker /src/worker
COPY reactions /src/reactions
COPY models /src/models

# ----------------------------------------------------------------------- build-cpu
# tensorflow-cpu and LiteRT: the pyproject extras `tf` and `litert`. With LiteRT the
# worker's `auto` runtime serves model.tflite, the faster path on CPUs. `video` (PyAV)
# lets `publish` read video files from this image too.
FROM build-base AS build-cpu
RUN --mount=type=cache,target=/root/.cache/pip \
    requirements tf litert video > /tmp/requirements.txt \
 && pip install --no-compile -r /tmp/requirements.txt
RUN finish-install

# ----------------------------------------------------------------------- build-gpu
# tensorflow[and-cuda]: the pyproject extra `gpu` (and `video`, as the cpu image).
FROM build-base AS build-gpu
RUN --mount=type=cache,target=/root/.cache/pip \
    requirements gpu video > /tmp/requirements.txt \
 && pip install --no-compile -r /tmp/requirements.txt
RUN finish-install

# ---------------------------------------------------------------------- build-lite
# LiteRT only (the pyproject extra `worker-lite`): a worker that serves model.tflite and
# never imports TensorFlow or PyAV (installed size and memory: docs/benchmarks.md,
# "Footprint"); `publish` reads image folders only. pip and setuptools go too: nothing
# installs at run time.
FROM build-base AS build-lite
RUN --mount=type=cache,target=/root/.cache/pip \
    requirements worker-lite > /tmp/requirements.txt \
 && pip install --no-compile -r /tmp/requirements.txt
RUN finish-install && pip uninstall --yes --quiet pip setuptools

# --------------------------------------------------------------------------- model
# Exported with the CPU build, so the GPU image builds on machines without a GPU.
FROM base AS model
COPY --from=build-cpu /opt/venv /opt/venv
COPY models /src/models
RUN if [ -f /src/models/default/saved_model.pb ]; then \
      cp -r /src/models/default /opt/model && echo trained > /opt/model/MODEL_KIND; \
    else \
      TF_CPP_MIN_LOG_LEVEL=2 memelearning models export-plumbing /opt/model \
      && echo plumbing > /opt/model/MODEL_KIND; \
    fi

# ------------------------------------------------------------------------- runtime
FROM base AS runtime
LABEL org.opencontainers.image.title="memelearning" \
      org.opencontainers.image.description="Gesture reactions for video meetings" \
      org.opencontainers.image.licenses="Apache-2.0"
# Owned by root and not writable by the process user: the model is read-only data.
COPY --from=model /opt/model /opt/memelearning/model
ENV MEMELEARNING_WORKER_MODEL_DIR=/opt/memelearning/model \
    TF_CPP_MIN_LOG_LEVEL=1 \
    HOME=/home/memelearning
WORKDIR /home/memelearning
USER 10001:10001
# 9100: worker /metrics /livez /readyz; 9102: reactions service.
EXPOSE 9100 9102
# The worker's readiness (model loaded, warmed up, consuming). Other commands run from
# this image (reactions, publisher) override it, as docker-compose.yml does.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["memelearning", "worker", "check"]
ENTRYPOINT ["memelearning"]
CMD ["worker"]

# ----------------------------------------------------------------------------- gpu
FROM runtime AS gpu
COPY --from=build-gpu /opt/venv /opt/venv

# ------------------------------------------------------------------------ cpu-lite
# The slim CPU worker: LiteRT, no TensorFlow. Its model must have a model.tflite (the
# shipped one has; the plumbing model is exported with one), and the runtime is pinned
# so that a model without one fails at start with a message, not a TensorFlow import.
FROM runtime AS cpu-lite
COPY --from=build-lite /opt/venv /opt/venv
# glibc keeps the per-frame decode buffers (about 1 MB each) in its thread arenas once
# its dynamic mmap threshold has grown, and the worker's RSS under load climbs from
# ~150 to ~250 MiB; a fixed threshold returns them to the system at each free: ~175
# MiB (docs/benchmarks.md, "Footprint").
ENV MEMELEARNING_WORKER_RUNTIME=litert \
    MALLOC_MMAP_THRESHOLD_=131072

# ----------------------------------------------------------------------------- cpu
# Last, so a plain `docker build .` gives the CPU image.
FROM runtime AS cpu
COPY --from=build-cpu /opt/venv /opt/venv
