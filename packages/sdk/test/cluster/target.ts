// Imported first by every suite in this folder: startE2eNode (../client/test-node.ts) then starts
// three PostgreSQL + NATS instances behind a round-robin load balancer instead of one SQLite node.
process.env.MW_E2E_TARGET = 'cluster';
