# One image for the three services (and the one-shot init steps); compose.yaml runs each
# from it with its own command.
#
# The base is pinned to a patch release. Where Docker Hub cannot be reached, the container
# suite (python3 dev.py containers) builds a stand-in under this name from Debian bookworm's
# packages and says so; bump the pin and the stand-in's notes together.
FROM python:3.11.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# The dependencies first, in a layer of their own: a change to our code rebuilds in seconds.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --quiet -r /tmp/requirements.txt && rm /tmp/requirements.txt
COPY protos ./protos
COPY services ./services
# A numeric user (Kubernetes' runAsNonRoot can check a number, not a name). Each mount point
# is its own: data (the database), keys (master keys, apart from the data), tls, credentials
# (the platform principals'), operator (the bootstrap operator's), and ca (the CA's private
# key, mounted only into the one-shot certs container).
RUN pip install --quiet --no-deps . \
    && groupadd --system --gid 10001 cmk && useradd --system --uid 10001 --gid 10001 --no-create-home cmk \
    && mkdir -p /data /keys /tls /credentials /operator /ca \
    && chown 10001:10001 /data /keys /tls /credentials /operator /ca \
    && chmod 700 /data /keys /operator /ca
USER 10001:10001
# identity, key vault, speech (gRPC); 9464 the Prometheus metrics of whichever runs here.
EXPOSE 50051 50052 50053 9464
CMD ["cmk", "--help"]
