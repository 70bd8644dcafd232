// Imported first by every suite in this folder: startE2eNode (../client/test-node.ts) then starts
// three PostgreSQL + NATS instances behind a round-robin load balancer instead of one SQLite node.
// Unset after the file, in case the test process runs another file next.
import { afterAll } from 'vitest';

process.env.MW_E2E_TARGET = 'cluster';
afterAll(() => {
  delete process.env.MW_E2E_TARGET;
});
