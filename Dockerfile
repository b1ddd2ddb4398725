# syntax=docker/dockerfile:1
# One image for every process of the chat backend. The process is chosen at
# run time by SERVICE (gateway by default) or the first argument:
#
#   docker build -t chat:local .
#   docker run -e SERVICE=messages chat:local     # or: docker run chat:local messages
#
# TypeScript runs as it is through tsx (a production dependency); the only
# build step is the web chat's static files (stage `web`).

# ---- deps: production dependencies only, cached until a package.json or the lock changes
FROM node:20-bookworm-slim AS deps
WORKDIR /app
# Every workspace's package.json, so npm ci links the workspaces and installs what they need.
COPY package.json package-lock.json ./
COPY packages/contracts/package.json packages/contracts/
COPY packages/platform/package.json packages/platform/
COPY packages/client/package.json packages/client/
COPY packages/web/package.json packages/web/
COPY services/gateway/package.json services/gateway/
COPY services/conversations/package.json services/conversations/
COPY services/messages/package.json services/messages/
COPY services/blocks/package.json services/blocks/
COPY services/presence/package.json services/presence/
COPY services/notifications/package.json services/notifications/
# --ignore-scripts: no dependency's install script runs (esbuild finds its
# platform binary through its optional dependency without one; the others are
# a version notice and analytics).
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# ---- web: the web chat's static build (Vite), served by the gateway at /.
# Its toolchain is a dev dependency, so it builds here and only dist/ moves on.
FROM deps AS web
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.base.json ./
COPY packages/contracts/src ./packages/contracts/src
COPY packages/client/src ./packages/client/src
COPY packages/web ./packages/web
RUN npm run build -w @chat/web

# ---- runtime
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# node_modules and the workspace package.json files from deps. The code stays
# owned by root: the process (user node) reads it and cannot change it.
COPY --from=deps /app ./
# tsx reads tsconfig.json, so the code compiles exactly as under `npm start`.
COPY tsconfig.json tsconfig.base.json ./
# Defaults of every setting (loadConfig reads config/config.yaml; env overrides it).
COPY config ./config
COPY packages/contracts/src ./packages/contracts/src
COPY packages/platform/src ./packages/platform/src
COPY --from=web /app/packages/web/dist ./packages/web/dist
# Each service's src and migrations (.dockerignore leaves out tests and docs).
COPY services ./services
COPY --chmod=0755 deploy/docker/entrypoint.sh ./deploy/docker/
COPY deploy/docker/healthcheck.mjs ./deploy/docker/

# The base image's unprivileged user `node`, by number so that Kubernetes'
# runAsNonRoot can verify it.
USER 1000:1000
# The gateway's HTTP and WebSocket port, then each service's metrics and /healthz port
# (conversations, messages, blocks, presence, notifications).
EXPOSE 8080 9101-9105
# Every process answers GET /healthz: the gateway on PORT, a service on METRICS_PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["node", "/app/deploy/docker/healthcheck.mjs"]
# SIGTERM makes the process drain and exit within a few seconds.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/app/deploy/docker/entrypoint.sh"]
CMD []
