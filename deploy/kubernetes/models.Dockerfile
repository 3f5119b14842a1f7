# syntax=docker/dockerfile:1.7
# The image of the models Job (base/models.yaml): Milo with the `models` extra, to run
# `milo models fetch` / `milo models convert` into the models volume. CPU only: converting
# needs no GPU. Build from the repository root:
#   docker build -f deploy/kubernetes/models.Dockerfile -t milo/models:0.1.0 .

ARG BASE_IMAGE=ubuntu:24.04

FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/milo \
    PATH=/opt/milo/bin:$PATH
# hadolint ignore=DL3008 # Ubuntu pins the interpreter by release; a version pin breaks on every point update
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

FROM base AS build
RUN python3 -m venv /opt/milo
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY protos ./protos
COPY services ./services
COPY gateway ./gateway
# torch from the CPU index first: the default wheel pulls GBs of CUDA libraries.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url https://download.pytorch.org/whl/cpu torch \
    && pip install ".[models]" \
    && pip check

FROM base AS runtime
LABEL org.opencontainers.image.title="milo-models" \
      org.opencontainers.image.description="Milo models Job: milo models fetch/convert"
RUN groupadd --system --gid 10001 milo \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/milo milo
COPY --from=build /opt/milo /opt/milo
USER 10001:10001
WORKDIR /home/milo
ENTRYPOINT []
CMD ["milo", "models", "--help"]
