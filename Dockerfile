# MeshWhisper node: one container, data in the /data volume, runs as the unprivileged `node` user.
# Untested here: no Docker engine runs on the development machines (docs/self-hosting-docker.md).

# Build stage: full image, because better-sqlite3 compiles from source when no prebuilt binary fits.
FROM node:20-bookworm AS build
WORKDIR /app
COPY . .
RUN npm ci \
 && npm run build \
 && npm prune --omit=dev

# Runtime stage: slim image, no compilers, no dev dependencies.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/data
WORKDIR /app
# Code is owned by root and read-only to the node user; only /data is writable.
COPY --from=build /app /app
RUN mkdir -p /data && chown node:node /data && chmod 0700 /data
USER node
VOLUME ["/data"]
EXPOSE 8080
# Liveness only (/health); /ready additionally checks that the database is writable.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
# One V8 helper thread for background GC work (docs/self-hosting.md §The V8 garbage collector).
CMD ["node", "--v8-pool-size=1", "packages/node/dist/bin.js"]
