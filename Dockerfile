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
# Exactly the versions the tests ran with, each file checked against its hash: requirements.lock
# (python3 dev.py lock makes it from pyproject.toml; python3 dev.py check fails when it is stale).
# --no-deps: the lock is the whole set, build backend included; nothing else is fetched.
COPY requirements.lock ./
RUN pip install --quiet --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY services ./services
# A numeric user (Kubernetes' runAsNonRoot can check a number, not a name). Each mount point
# exists, owned by that user, so that a new volume mounted there is the user's (Docker copies
# the mount point's owner into it): data (the database), keys (master keys, apart from the
# data), tls (this service's certificate), credentials/<service> (a platform principal's),
# operator (the bootstrap operator's), pg-secret (a service's database password, in the
# replicas profile; pg-admin and pg/<service> for the one-shot that makes them), and ca, pki
# and issued/<name>, which only the one-shot certs container mounts.
RUN pip install --quiet --no-deps --no-build-isolation . \
    && groupadd --system --gid 10001 cmk && useradd --system --uid 10001 --gid 10001 --no-create-home cmk \
    && mounts="/data /keys /tls /credentials /credentials/keyvault /credentials/speech /operator /pg-secret \
        /pg-admin /pg /pg/identity /pg/keyvault /pg/speech /ca /pki /issued /issued/identity /issued/keyvault /issued/speech /issued/cli" \
    && mkdir -p $mounts && chown 10001:10001 $mounts && chmod 700 $mounts
USER 10001:10001
# identity, key vault, speech (gRPC); identity's and the key vault's HTTPS doors; the CONNECT
# proxy (cmk serve proxy); 9464 the Prometheus metrics of whichever runs here.
EXPOSE 50051 50052 50053 50054 50055 50056 9464
CMD ["cmk", "--help"]
