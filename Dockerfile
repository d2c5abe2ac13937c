# kafka-outbox: the `outbox` CLI (relay, projector, migrate, status, audit, ...) as a container image.
#   docker build -t kafka-outbox .
#   docker run --rm -e DATABASE_URL=... -e KAFKA_BROKERS=... -e SCHEMA_REGISTRY_URL=... kafka-outbox relay
# Configuration is the environment only (README "Configuration reference"); the image holds no secrets.

# ---- build: compile TypeScript with the dev dependencies ----
FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json index.ts ./
COPY core ./core
COPY event ./event
COPY writer ./writer
COPY relay ./relay
COPY projector ./projector
COPY schemas ./schemas
COPY infra ./infra
COPY cli ./cli
COPY console ./console
# The same build as `npm pack` runs: tsc, then the migrations and console assets next to the compiled code.
RUN npm run build

# ---- production dependencies only ----
FROM node:20-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# ---- runtime: compiled code, prod deps, the .avsc schemas; non-root ----
FROM node:20-slim
ENV NODE_ENV=production \
    OUTBOX_ADMIN_HOST=0.0.0.0
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY bin ./bin
# The example domain's schemas, for docker-compose.yml (OUTBOX_SCHEMAS_DIR); a service mounts its own
# schemas directory (OUTBOX_SCHEMAS_DIR) or config module (OUTBOX_CONFIG) instead.
COPY examples/users-service/schemas ./examples/users-service/schemas
# The node image's unprivileged user (uid 1000); nothing in /app is writable by it.
USER node
# Admin endpoints (/metrics, /healthz, /readyz), on by default: relay 9464, project 9465 (OUTBOX_ADMIN_PORT
# overrides, 0 turns them off). OUTBOX_ADMIN_HOST=0.0.0.0 above makes them reachable from outside.
EXPOSE 9464 9465
ENTRYPOINT ["node", "bin/outbox.js"]
CMD ["--help"]
