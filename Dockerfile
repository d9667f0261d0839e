# bncheck in a container: `docker build -t bncheck .` then
# `docker run --rm -v "$PWD:/work" bncheck verify my_derivation.py`.
FROM python:3.11-slim
WORKDIR /opt/bncheck
COPY pyproject.toml README.md ./
COPY bncheck ./bncheck
RUN pip install --no-cache-dir .
WORKDIR /work
ENTRYPOINT ["bncheck"]
CMD ["verify"]
