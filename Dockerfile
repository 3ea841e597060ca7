# tag-gate as a container: one process, one TOML file.
#
#   docker build -t tag-gate .
#   docker run -p 8080:8080 -v $PWD/my.toml:/etc/tag-gate/tag-gate.toml:ro \
#       -e TAG_GATE_UPSTREAM=http://app:8000 tag-gate
#
# tests/test_dockerfile.py replays the install and start steps below in a clean
# virtual environment, so this file cannot silently rot.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/tag-gate
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin taggate
COPY config/tag-gate.toml /etc/tag-gate/tag-gate.toml

USER 10001

# The mounted file is read from here; each variable overrides its key in the file.
ENV TAG_GATE_CONFIG=/etc/tag-gate/tag-gate.toml \
    TAG_GATE_LISTEN=0.0.0.0:8080 \
    TAG_GATE_ADMIN_LISTEN=0.0.0.0:9090

EXPOSE 8080 9090

# SIGTERM: readiness goes false, in-flight requests finish within timeouts.grace, exit 0.
STOPSIGNAL SIGTERM

HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9090/healthz', timeout=2).status != 200)"]

ENTRYPOINT ["tag-gate"]
CMD ["serve"]
