# One image for the API, the ingest worker and one-off ingests (docker-compose.yml). Everything
# the app needs offline (embedding model, tiktoken vocabularies, the spaCy stand-in) is installed
# at build time; nothing downloads at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    CITEWISE_HOME=/var/lib/citewise CITEWISE_CACHE_DIR=/opt/citewise-cache
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY offline ./offline
COPY citewise ./citewise
COPY api ./api
COPY ingest ./ingest
COPY cli ./cli
# Every answer provider's extra: the image serves whichever CITEWISE_ANSWER_PROVIDER names.
RUN pip install --no-cache-dir '.[anthropic,gemini]' ./offline/en_core_web_sm \
    && python -m citewise.offline
COPY data ./data

RUN useradd --system --home /var/lib/citewise citewise && mkdir -p /var/lib/citewise \
    && chown citewise /var/lib/citewise && chmod -R a+rX /opt/citewise-cache
USER citewise
EXPOSE 8000
CMD ["citewise", "serve", "--host", "0.0.0.0", "--port", "8000"]
