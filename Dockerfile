# One image for both parts of distributed Lethe: `lethe gateway` (the default command)
# and `lethe worker` (one container per GPU; docker-compose.yml picks the command).
# torch comes with the base image, built for CUDA; `pip install .` keeps it because it
# satisfies the package's `torch>=2.4,<3`.
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    LETHE_DATA_DIR=/var/lib/lethe

RUN useradd --create-home --shell /usr/sbin/nologin lethe \
    && mkdir -p /var/lib/lethe /srv/models \
    && chown lethe:lethe /var/lib/lethe /srv/models

WORKDIR /opt/lethe
COPY pyproject.toml README.md ./
COPY unlearning ./unlearning
COPY workers ./workers
COPY service ./service
RUN pip install . && python -c "import torch, diffusers, service.cli"

# The digits demo model, so `POST /v1/models {"source": {"path": "/opt/lethe/models/digits"}}` works.
COPY models ./models

USER lethe
VOLUME ["/var/lib/lethe"]
EXPOSE 8000

# The gateway's liveness; worker containers override this check in docker-compose.yml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=4)"]

ENTRYPOINT ["lethe"]
CMD ["gateway", "--host", "0.0.0.0", "--port", "8000"]
