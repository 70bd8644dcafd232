#!/usr/bin/env node
// Committed launcher for the compiled CLI, so that npm links the `meshwhisper` binary even on a fresh
// checkout before `npm run build` has produced dist/.
import('../dist/bin.js').catch((e) => {
  if (e && e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes('dist/bin.js')) {
    console.error('meshwhisper: MW_CLI_NOT_FOUND: not built yet (no dist/): run `npm run build` at the repository root first');
    process.exit(1);
  }
  throw e;
});
