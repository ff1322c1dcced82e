# Build stage: install memshift and its dependencies into a self-contained venv.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/memshift \
 && /opt/memshift/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/memshift/bin/pip install --no-cache-dir .

# Run stage: only the venv, run by an unprivileged user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/memshift memshift
COPY --from=build /opt/memshift /opt/memshift
ENV PATH=/opt/memshift/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER memshift
WORKDIR /var/lib/memshift
# Databases, the state db and memshift up's data dir live here: keep it on a volume.
VOLUME ["/var/lib/memshift"]
EXPOSE 8100 8101 8102 8109
# Healthy when /healthz answers on MEMSHIFT_HEALTH_PORT: the admin port of a proxy
# (8109), or a store's own port (8101, 8102).
ENV MEMSHIFT_HEALTH_PORT=8109
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ['MEMSHIFT_HEALTH_PORT'], timeout=2)"]
ENTRYPOINT ["memshift"]
CMD ["--help"]
