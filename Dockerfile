# syntax=docker/dockerfile:1
# ssdiff in a container: CPU build of PyTorch by default, the shipped models included.
#
#   docker build -t ssdiff .
#   docker run --rm -u "$(id -u):$(id -g)" -v "$PWD:/data" ssdiff sharpen pan.tif ms.tif -o out.tif
#
# Build arguments:
#   TORCH_INDEX_URL  index PyTorch (and its dependencies) come from; default the official CPU
#                    index. CUDA build (run it with `docker run --gpus all ...`): an index the pinned
#                    torch version is published for, e.g.
#                      docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t ssdiff:cuda .
#                    Empty: torch from the wheel folder below, its dependencies from pip's
#                    ordinary index.
#   TORCH_VERSION    default 2.13.0, as scripts/setup.sh.
#   BASE_IMAGE       the Python base, pinned by tag and digest.
# A local wheel folder (a torch wheel, say, where the index is not reachable) is given as the
# build context named `wheels`; pip looks there first:
#   docker build --build-context wheels=/path/to/wheels --build-arg TORCH_INDEX_URL= -t ssdiff .
# scripts/docker_smoke.sh builds and runs this file with buildah, without a Docker engine.
#
# Layers, slowest to change first: tini, PyTorch, the other dependencies (from pyproject.toml),
# then the code and models. A code change rebuilds only the last layer; torch is never reinstalled.
#
# tini is PID 1 and passes `docker stop`'s SIGTERM on to ssdiff, which stops and removes its work
# files (exit 143), instead of the signal being ignored until the SIGKILL.
#
# The image holds dask.distributed too, so the same image can serve as a cluster worker:
#   docker run --rm --entrypoint dask ssdiff worker tcp://SCHEDULER:8786
# (workers read the input paths themselves: mount the same data at the same path, or use
# /vsis3/... style paths).
ARG BASE_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# The `wheels` build context; empty unless one is given (see above).
FROM scratch AS wheels

FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

LABEL org.opencontainers.image.title="ssdiff" \
      org.opencontainers.image.description="Scene-scale pansharpening: PAN + MS to a pansharpened COG" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/ssdiff \
    PATH=/opt/ssdiff/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# rasterio's wheels bundle GDAL, so no gdal-bin / system GDAL is needed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV"

# PyTorch first, from its own index, so pip never pulls the multi-GB CUDA build from a bare
# `torch` requirement (as scripts/setup.sh).
RUN --mount=type=bind,from=wheels,target=/wheels \
    if [ -n "$TORCH_INDEX_URL" ]; then export PIP_INDEX_URL="$TORCH_INDEX_URL"; fi \
    && pip install --no-cache-dir --find-links /wheels "torch==${TORCH_VERSION}"

# The other dependencies, read from pyproject.toml alone (setuptools builds the package below).
COPY pyproject.toml /tmp/deps/pyproject.toml
RUN python3 -c "import tomllib; p = tomllib.load(open('/tmp/deps/pyproject.toml', 'rb')); \
print('\n'.join(p['project']['dependencies'] + p['build-system']['requires']))" > /tmp/deps/requirements.txt \
    && pip install --no-cache-dir -r /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps

# The code and the shipped models (package data in ssdiff_cli/models).
COPY pyproject.toml README.md /src/
COPY ssdiff_cli /src/ssdiff_cli
RUN pip install --no-cache-dir --no-deps --no-build-isolation /src \
    && rm -rf /src \
    && ssdiff --version \
    && ssdiff models list

RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin ssdiff \
    && mkdir -p /data \
    && chown ssdiff:ssdiff /data
USER 1000:1000
WORKDIR /data

ENTRYPOINT ["tini", "--", "ssdiff"]
CMD ["--help"]
