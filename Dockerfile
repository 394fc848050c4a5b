# Build stage: compile wheels with the build tools, which stay behind in this stage.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY workers ./workers
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[flower]"

# Runtime stage: slim image, no compilers, non-root user.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8000
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels \
    && useradd --create-home --uid 10001 intercom-sync
USER intercom-sync
WORKDIR /home/intercom-sync
EXPOSE 8000
# The Procfile's web line (workers/ops/processes.py); server settings live in app/gunicorn_conf.py.
CMD ["gunicorn", "--config", "python:app.gunicorn_conf", "app:create_app()"]
