# The Pricestream image: one image, every role; the command picks the role
# (docker run pricestream run | ingest | stream | web).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stream ./stream
COPY ingest ./ingest
COPY render ./render
COPY web ./web
COPY pricestream ./pricestream
RUN pip install . && useradd --system --home /app pricestream && mkdir /data \
    && chown pricestream /data
USER pricestream
ENV PRICESTREAM_STORAGE_DATA_DIR=/data PRICESTREAM_SERVER_HOST=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["pricestream"]
CMD ["run"]
