/** @meshwhisper/node: the MeshWhisper node as a library (the `meshwhisper-node` binary is bin.ts). */
export { CONFIG_SCHEMA, NodeConfigError, NodeConfigErrorCode, loadConfig } from './config.js';
export type { NodeConfig, Setting, UsernamePolicy } from './config.js';
export {
  BACKUP_USAGE,
  BackupError,
  BackupErrorCode,
  DEFAULT_BACKUP_INTERVAL_MS,
  DEFAULT_BACKUP_RETENTION,
  backupDatabase,
  backupDatabaseFile,
  listBackups,
  pruneBackups,
  restoreDatabase,
  runBackupCli,
  scheduleBackups,
} from './backup.js';
export type { BackupCliDefaults, BackupInfo, BackupOptions, BackupResult, BackupSchedule, BackupScheduleOptions, CliIo, RestoreOptions, RestoreResult } from './backup.js';
export { ANONYMOUS_SOCKET_PATH, DATABASE_FILE, createNode } from './node.js';
export type { CreateNodeOptions, MeshWhisperNode } from './node.js';
export { NODE_KEY_FILE, NodeKey, loadOrCreateNodeKey } from './node-key.js';
export { REQUIRED_PRAGMAS, migrate, openDatabase, pragmasInForce } from './store/db.js';
export { MIGRATIONS } from './store/migrations.js';
export { SqliteNodeStore, FORGET_WITHIN_MS, HEALTH_PROBE_INTERVAL_MS } from './store/sqlite-store.js';
export type { SqliteStoreOptions } from './store/sqlite-store.js';
export { PgNodeStore, PgStoreError, PgStoreErrorCode, PG_FORGET_WITHIN_MS, migratePg } from './store/pg-store.js';
export type { PgStoreOptions } from './store/pg-store.js';
export { PG_MIGRATIONS } from './store/pg-migrations.js';
export { NatsDeliveryBus } from './mailbox/nats-bus.js';
export { describePgUrl, probeNats, probePostgres } from './cluster-probe.js';
export type { NatsProbe, PgProbe, ProbeOutcome } from './cluster-probe.js';
export type { NatsBusOptions } from './mailbox/nats-bus.js';
export type * from './store/node-store.js';
export { LocalDeliveryBus } from './mailbox/bus.js';
export type { BusSubscriber, DeliveryBus } from './mailbox/bus.js';
export { DataDirError, LOCK_FILE, lockDataDir, lockHolder } from './store/data-dir.js';
export { deliveryTokenHash } from './mailbox/send.js';
export type { PushTestOptions } from './push/setup.js';
