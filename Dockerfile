# syntax=docker/dockerfile:1
# ssdiff in a container: CPU build of PyTorch by default.
#
#   docker build -t ssdiff .
#   docker run --rm -u "$(id -u):$(id -g)" -v "$PWD:/data" ssdiff sharpen pan.tif ms.tif -o out.tif
#
# CUDA build (run with `docker run --gpus all ...`): pick a variant the pinned torch version is
# published for on the PyTorch wheel index, e.g.
#   docker build --build-arg TORCH_VARIANT=cu128 -t ssdiff:cuda .
#
# The image holds dask.distributed too, so the same image can serve as a cluster worker:
#   docker run --rm --entrypoint dask ssdiff worker tcp://SCHEDULER:8786
# (workers read the input paths themselves: mount the same data at the same path, or use
# /vsis3/... style paths).
#
# Install steps mirror scripts/setup.sh: PyTorch first (so pip never pulls the multi-GB CUDA
# build from a bare `torch` requirement), then the package.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu

LABEL org.opencontainers.image.title="ssdiff" \
      org.opencontainers.image.description="Scene-scale pansharpening: PAN + MS to a pansharpened COG" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# rasterio's wheels bundle GDAL, so no gdal-bin / system GDAL is needed.
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" \
        --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"

COPY pyproject.toml README.md /src/
COPY ssdiff_cli /src/ssdiff_cli
RUN pip install --no-cache-dir /src \
    && rm -rf /src \
    && ssdiff --help > /dev/null

RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin ssdiff \
    && mkdir -p /data \
    && chown ssdiff:ssdiff /data
USER 1000:1000
WORKDIR /data

ENTRYPOINT ["ssdiff"]
CMD ["--help"]
