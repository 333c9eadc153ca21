# syntax=docker/dockerfile:1
# torch-codemod: the CLI and the GitHub App (`codemod serve`, `codemod worker`).
#
#   docker build -t torch-codemod .                                     # CPU torch (default)
#   docker build -t torch-codemod:cuda \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .   # a CUDA torch (GPU workers)
#
# BASE_IMAGE must be a Debian image with Python 3.11 as `python3` (and its venv module).
# Package settings of the build machine (a private index, a CA bundle, local wheels) are passed in
# at build time only, never stored in a layer:
#   --secret id=pip.conf,src=FILE      a pip configuration file used by the pip installs
#   --secret id=pip-ca,src=FILE        a CA bundle, found at /run/secrets/pip-ca (name it in pip.conf)
#   podman build -v DIR:/wheels:ro     a directory of wheels (name it in pip.conf as find-links)
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Empty: take torch from the indexes pip is configured with (e.g. a local wheel).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/codemod
# torch first, pinned: an unpinned one pulls GBs of CUDA packages. Its own layer, so a change to
# the project's code does not reinstall it.
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi; \
    /opt/codemod/bin/pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple} \
        "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY codemod ./codemod
COPY service ./service
# A regular (not editable) install of the project from the build context, with the App's extra.
RUN --mount=type=secret,id=pip.conf --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip.conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip.conf; fi; \
    /opt/codemod/bin/pip install ".[service]"

FROM ${BASE_IMAGE}
# git: the worker clones and pushes. No recommends, lists removed: a smaller layer.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# The service never runs as root. The sandbox of `codemod verify` then adds what the container's
# runtime allows (see the README, "The sandbox in a container").
RUN groupadd --system --gid 10001 codemod \
    && useradd --system --uid 10001 --gid codemod --home-dir /var/lib/codemod --shell /usr/sbin/nologin codemod \
    && install -d -o codemod -g codemod -m 0700 /var/lib/codemod
COPY --from=build /opt/codemod /opt/codemod
COPY fixtures/repos /opt/codemod/share/fixtures/repos
COPY fixtures/webhooks /opt/codemod/share/fixtures/webhooks
ENV PATH=/opt/codemod/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CODEMOD_DATA_DIR=/var/lib/codemod
VOLUME ["/var/lib/codemod"]
WORKDIR /var/lib/codemod
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["codemod", "serve", "--host", "0.0.0.0", "--port", "8000"]
