// Storage adapters (docs/api-storage.md). The lead extends this file with the client API.
export { StorageError, StorageErrorCode } from './storage/errors.js';
export type { ProtocolStorage, StorageKind } from './storage/types.js';
export { MemoryStorage, memoryStorage } from './storage/memory.js';
export { SqliteStorage, openSqliteStorage, SQLITE_MIGRATIONS } from './storage/sqlite.js';
export type { SqliteDatabase, SqliteDriver, SqliteStatement, SqliteStorageOptions } from './storage/sqlite.js';
export { IndexedDbStorage, openIndexedDbStorage, INDEXEDDB_MIGRATIONS } from './storage/indexeddb.js';
export type { IndexedDbStorageOptions } from './storage/indexeddb.js';
export { SQLITE_APPLICATION_ID, SQLITE_BUSY_TIMEOUT_MS, STORAGE_WEB_LOCK_PREFIX } from './constants.js';
// The client (docs/api.md).
export { MeshWhisper, CONTENT_VERSION, DELIVERY_TOKEN_LENGTH, PREKEY_BATCH, PREKEY_LOW_WATER } from './client/client.js';
export type { MeshWhisperOptions, MeshWhisperEvents, IncomingMessage, UndecryptableMessage } from './client/client.js';
export { SdkError, SdkErrorCode } from './client/errors.js';
export type { ConnectionState, WebSocketConstructor, WebSocketLike } from './client/connection.js';
export type { AppStore, AppItem, ListItemsOptions, StorageTx } from './storage/types.js';
export { asStorageTx, isStorageTx } from './storage/types.js';
export { APP_TABLE_MAX_BYTES, APP_KEY_MAX_BYTES, APP_VALUE_MAX_BYTES } from './constants.js';
export type { PushInfo, PushRegistrationInput, WebPushSubscriptionInput } from './client/push.js';
export type { FileAttachment, FileSource, SendFileOptions } from './client/media.js';
export { MAX_THUMBNAIL_BYTES } from './constants.js';
export type { MessageRef, TextOptions, MessageState, Recipient, UsernameRecord } from './client/client.js';
export { MAX_DISAPPEARING_SECONDS } from './client/client.js';
export type { ContactState } from './client/client.js';
export type { HistoryEntry } from './client/history.js';
export { encodeContactCard, decodeContactCard, CONTACT_CARD_PREFIX, CONTACT_CARD_VERSION, CONTACT_CARD_MAX_LENGTH, CONTACT_CARD_MAX_MAILBOX_IDS, CONTACT_CARD_MAX_NODE_LENGTH } from './client/contact-card.js';
export type { ContactCard } from './client/contact-card.js';
export { qrMatrix, qrSvg, QR_DEFAULT_MARGIN, QR_DEFAULT_MODULE_SIZE } from './client/qr.js';
export type { QrMatrix, QrOptions, QrSvgOptions, QrErrorCorrection } from './client/qr.js';
