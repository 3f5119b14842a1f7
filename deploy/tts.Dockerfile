# syntax=docker/dockerfile:1.7
# Milo TTS: a VITS voice (MMS-TTS, fine-tuned) on transformers + torch. Build from the
# repository root:
#   docker build -f deploy/tts.Dockerfile -t milo/tts:cuda .
#   docker build -f deploy/tts.Dockerfile --build-arg DEVICE=cpu -t milo/tts:cpu .
# torch's CUDA wheels carry their own CUDA runtime and cuDNN (nvidia-* packages), so both
# variants share a plain Ubuntu base; DEVICE picks the torch build (deploy/install.sh).
# The voice is mounted read-only at /models/tts (see docker-compose.yml).

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
# cuda | cpu: which torch build to install.
ARG DEVICE=cuda
# Empty: install.sh's default index for DEVICE (PyTorch cu128 or cpu wheels).
ARG TORCH_INDEX_URL=
ARG TORCH_SPEC=torch
RUN python3 -m venv /opt/milo
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY protos ./protos
COPY services ./services
COPY gateway ./gateway
COPY deploy/install.sh ./deploy/install.sh
RUN --mount=type=cache,target=/root/.cache/pip \
    TORCH_INDEX_URL="${TORCH_INDEX_URL}" TORCH_SPEC="${TORCH_SPEC}" \
    sh deploy/install.sh tts "${DEVICE}" .

FROM base AS runtime
LABEL org.opencontainers.image.title="milo-tts" \
      org.opencontainers.image.description="Milo text-to-speech service (gRPC)"
RUN groupadd --system --gid 10001 milo \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/milo milo
COPY --from=build /opt/milo /opt/milo
USER 10001:10001
WORKDIR /home/milo
# Settings come from the environment (MILO_TTS_*); the voice from the read-only mount.
# The NVIDIA_* variables let the container toolkit mount the driver into this plain base
# (the nvidia/cuda images set them); they do nothing without a GPU.
ENV MILO_MODELS_DIR=/models \
    MILO_TTS_HOST=0.0.0.0 \
    MILO_TTS_PORT=50054 \
    MILO_TTS_METRICS_PORT=9154 \
    MILO_HEALTHCHECK_ADDRESS=127.0.0.1:50054 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
EXPOSE 50054 9154
# SERVING only once the model is loaded and warmed up; loading may take a minute.
HEALTHCHECK --interval=10s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-m", "services.runtime.healthcheck"]
ENTRYPOINT ["python", "-m", "services.tts"]
