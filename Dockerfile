# One image: the node with the embedded defaults, installed exactly as scripts/serve.sh
# (the README's first command) installs it: a venv in .venv and `pip install .`.
FROM python:3.11-slim-bookworm

WORKDIR /opt/precedent
COPY pyproject.toml README.md ./
COPY node ./node
COPY indexer ./indexer
COPY viewer_plugin ./viewer_plugin
COPY conf ./conf
COPY scripts ./scripts

RUN python3 -m venv .venv \
 && .venv/bin/pip install -q --upgrade pip \
 && .venv/bin/pip install -q .

# Files and the catalog live in /data; BiomedCLIP weights can be mounted at /model
# and named with PRECEDENT_MODEL__PATH=/model (see README, "Model weights offline").
# HTTP listens on every address of the container (the node's default is 127.0.0.1):
# give it a read token (PRECEDENT_HTTP__READ_TOKEN) before publishing the port. The
# admin token the node makes at its first start is kept in /data/admin-token.
ENV PRECEDENT_NODE__DATA_DIR=/data PRECEDENT_HTTP__HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 11112 8080
ENTRYPOINT [".venv/bin/precedent"]
CMD ["serve"]
