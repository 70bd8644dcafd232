// Imported first by every suite in this folder: startE2eNode (../client/test-node.ts) then starts
// the built node with WORKERS=2 — a primary and two worker processes on one SQLite file, sharing
// the port — instead of one in-process node. Unset after the file, in case the test process runs
// another file next.
import { afterAll } from 'vitest';

process.env.MW_E2E_TARGET = 'workers';
afterAll(() => {
  delete process.env.MW_E2E_TARGET;
});
