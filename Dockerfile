# bncheck in a container. Build with `docker build -t bncheck .`, then run it from the folder that
# holds your derivation:
#
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/work" -v bncheck-cache:/cache \
#     bncheck verify my_derivation.py --json report.json
#
# --user makes the reports written into /work yours, not root's; any uid works. The named volume
# bncheck-cache keeps JAX's compiled references between runs, so only the first run compiles.
FROM python:3.11.7-slim-bookworm

# HOME and the cache are world-writable (sticky, as /tmp is) so that a uid the image has never heard
# of, given with --user, can still write there. A new named volume mounted on /cache starts as a copy
# of this folder, mode included.
ENV HOME=/home/bncheck \
    BNCHECK_COMPILE_CACHE=/cache
RUN useradd --uid 10001 --no-create-home --home-dir /home/bncheck bncheck \
    && mkdir -m 1777 /home/bncheck /cache /work

WORKDIR /opt/bncheck
COPY constraints.txt pyproject.toml README.md ./
COPY bncheck ./bncheck
RUN pip install --no-cache-dir --disable-pip-version-check -c constraints.txt .

USER bncheck
WORKDIR /work
ENTRYPOINT ["bncheck"]
CMD ["verify"]
