# syntax=docker/dockerfile:1
# dnsgeo sidecar image.
#   docker build -t dnsgeo:0.1.0 --build-arg VCS_REF=$(git rev-parse HEAD) --build-arg BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
#   docker run --rm -p 127.0.0.1:8053:8053 -v dnsgeo-data:/data dnsgeo:0.1.0
#
# Node.js 24 (LTS until April 2028): Node.js 20 reached end of life on 2026-04-30. Both 24
# and 26 are LTS lines now; 24 is the one dnsgeo was run on besides 20 (README, "Docker").

# ---- build: compiler toolchain for better-sqlite3, full dependencies, tsc ----
FROM node:24-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts are skipped here because `prepare` builds dnsgeo, whose sources are not
# copied yet; better-sqlite3's own install step (prebuilt binary or a compile with
# the toolchain above) then runs on its own.
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3
COPY tsconfig.json ./
COPY src ./src
COPY proto ./proto
# Only src/ is compiled (the bench sources are not copied); VCS_REF becomes the commit
# label of dnsgeo_build_info and of the start-up line.
ARG VCS_REF=""
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund \
 && if [ -n "$VCS_REF" ]; then printf '{"commit":"%s"}\n' "$VCS_REF" > build-info.json; else echo '{}' > build-info.json; fi

# ---- runtime: no compiler, no dev dependencies, no tests or bench, not root ----
FROM node:24-bookworm-slim
ARG VERSION=0.1.0
ARG VCS_REF=""
ARG BUILD_DATE=""
LABEL org.opencontainers.image.title="dnsgeo" \
      org.opencontainers.image.description="Sidecar that adds geo, ASN, ORG and ISP data to DNS logs for Vector, Fluent Bit and friends" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$VCS_REF" \
      org.opencontainers.image.created="$BUILD_DATE" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/node:24-bookworm-slim"
# tini as PID 1: forwards SIGTERM to node (dnsgeo then drains in-flight batches and
# flushes its cache writes) and reaps zombies.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 dnsgeo \
 && useradd --system --uid 10001 --gid dnsgeo --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin dnsgeo \
 && mkdir -p /data \
 && chown dnsgeo:dnsgeo /data
WORKDIR /app
COPY --from=build /app/package.json /app/build-info.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/proto ./proto

# Outside a container dnsgeo listens on 127.0.0.1 only, so nothing but the local
# shipper can reach it. Inside a container 127.0.0.1 is the container's own
# loopback, out of reach of a published port, a pod's probes or other containers
# on the network, so the image listens on every interface of its own namespace.
# Publish the ports to 127.0.0.1 on the host (-p 127.0.0.1:8053:8053), or set
# DNSGEO_AUTH_TOKEN when other hosts can reach them.
ENV NODE_ENV=production \
    DNSGEO_DATA_DIR=/data \
    DNSGEO_HTTP_HOST=0.0.0.0 \
    DNSGEO_GRPC_HOST=0.0.0.0

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8053 8054

# The slim image has no curl: ask /livez with node itself (port, TLS and token
# from the same environment variables dnsgeo reads).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "const e=process.env,s=!!e.DNSGEO_HTTP_TLS_CERT_FILE,h=e.DNSGEO_AUTH_TOKEN?{authorization:'Bearer '+e.DNSGEO_AUTH_TOKEN}:{};require(s?'node:https':'node:http').get({host:'127.0.0.1',port:e.DNSGEO_HTTP_PORT||8053,path:'/livez',headers:h,rejectUnauthorized:false,timeout:4000},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1)).on('timeout',()=>process.exit(1))"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "dist/src/main.js", "serve"]
