# labctl's image: `labctl serve` as a non-root numeric user, with bubblewrap for the grader jail.
# Build from the repository root: docker build -t REGISTRY/labctl:TAG .   (docs/DEPLOY.md)
# The base is pinned by tag; pin it by digest too where your registry policy asks (FROM python:...@sha256:...).
FROM python:3.11.14-slim-bookworm

# bubblewrap jails every grader (labctl/grading/jail.py); setpriv (util-linux) is already in the base image.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bubblewrap \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Every dependency at the version and hash the lock names; nothing resolved at build time.
COPY requirements.lock /app/requirements.lock
RUN pip install --require-hashes --no-deps -r /app/requirements.lock

# The package and the data it reads beside it (labs, manifests, graders), installed in place as `make venv` does, so
# labctl finds them next to its code. No build isolation: the base image's setuptools builds it, nothing is fetched.
COPY pyproject.toml README.md /app/
COPY labctl /app/labctl
COPY api /app/api
COPY labs /app/labs
COPY manifests /app/manifests
COPY graders /app/graders
# The graders' modules compiled here, as labctl does at first use where it may write (labctl/grading/bytecode.py):
# the running user cannot write /app, and graders in their read-only jail would compile them at every start.
RUN pip install --no-deps --no-build-isolation -e /app \
 && python -c "import labctl.cli.main, api.app" \
 && python -m compileall -q --invalidation-mode checked-hash /app/graders

# A numeric uid (Pod Security's runAsNonRoot can check it without reading /etc/passwd); it owns nothing in /app.
USER 10001:10001
ENV HOME=/tmp LABCTL_DATA_DIR=/var/lib/labctl
EXPOSE 8080
ENTRYPOINT ["labctl", "serve"]
