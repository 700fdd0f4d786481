# One image for the three services (and the one-shot init steps); compose.yaml runs each
# from it with its own command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY services ./services
RUN pip install . && useradd --system --uid 10001 cmk && mkdir -p /data /tls /credentials \
    && chown cmk /data /tls /credentials
USER cmk
# identity, key vault, speech
EXPOSE 50051 50052 50053
CMD ["cmk", "--help"]
