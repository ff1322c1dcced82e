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
EXPOSE 8100 8101 8102 8109
ENTRYPOINT ["memshift"]
CMD ["--help"]
