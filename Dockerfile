# One image for the API, the worker and the migration job.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# CPU torch by default; build with --build-arg TORCH_INDEX=... for a CUDA build.
ARG TORCH_SPEC="torch>=2.2"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"
RUN pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"
COPY pyproject.toml README.md alembic.ini ./
COPY client ./client
COPY service ./service
RUN pip install -e ./client -e ".[embed]"
EXPOSE 8000
CMD ["curator", "serve", "--host", "0.0.0.0", "--port", "8000"]
