#!/usr/bin/env node
/**
 * `meshwhisper-node [start]` runs the node; settings come from the environment
 * (docs/self-hosting.md). `meshwhisper-node backup` is provided by backup.ts (see the hook below).
 */
import { CONFIG_SCHEMA, NodeConfigError, loadConfig } from './config.js';
import { createNode } from './node.js';

const USAGE = `usage: meshwhisper-node [start | backup | help]

  start    run the node (default)
  backup   write an online backup of the database now (see docs/self-hosting.md)
  help     this text and the list of settings

Settings (environment variables):
${Object.values(CONFIG_SCHEMA)
  .map((s) => `  ${s.env.padEnd(28)} default ${JSON.stringify(s.default)}\n      ${s.description}`)
  .join('\n')}
`;

async function start(): Promise<void> {
  const config = loadConfig();
  const node = await createNode(config);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    node.app.log.info({ signal }, 'shutting down');
    node.close().then(
      () => process.exit(0),
      (e: unknown) => {
        console.error('shutdown failed:', e instanceof Error ? e.message : e);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    await node.listen();
  } catch (e) {
    await node.close();
    throw e;
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const [command = 'start'] = argv;
  switch (command) {
    case 'start':
      return start();
    case 'backup':
      // HOOK (backup): the backup helper wires `meshwhisper-node backup` here, calling into
      // ./backup.js with loadConfig().dataDir and the database file name DATABASE_FILE from ./node.js.
      console.error('meshwhisper-node backup: not wired yet (packages/node/src/backup.ts)');
      process.exitCode = 2;
      return;
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return;
    default:
      console.error(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      process.exitCode = 2;
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof NodeConfigError) console.error(`configuration error: ${e.message}`);
  else console.error('meshwhisper-node failed to start:', e instanceof Error ? e.message : e);
  process.exit(1);
});
