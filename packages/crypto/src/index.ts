export * from './errors.js';
export * from './constants.js';
export * from './bytes.js';
export { ByteReader, ByteWriter } from './encoding.js';
export * from './context.js';
export * from './primitives/index.js';
export * from './keys.js';
export * from './device-list.js';
export * from './link.js';
export * from './prekeys.js';
export * from './pqxdh.js';
export * from './stores.js';
export * from './session.js';
export {
  RatchetState,
  RatchetLabel,
  RATCHET_HEADER_LENGTH,
  RATCHET_ENCRYPTED_HEADER_LENGTH,
  RATCHET_MESSAGE_OVERHEAD,
  initRatchetAsInitiator,
  initRatchetAsResponder,
  ratchetEncrypt,
  ratchetDecrypt,
  serializeRatchetState,
  deserializeRatchetState,
  hasReceivedMessage,
  canEncrypt,
  ratchetStateSummary,
  isRatchetState,
} from './ratchet.js';
export type { RatchetStateSummary } from './ratchet.js';
export * from './padding.js';
export * from './sealed-sender.js';
export * from './prekey-rotation.js';
export {
  computeSafetyNumber,
  verifyScannedSafetyNumber,
  encodeScannableSafetyNumber,
  formatSafetyNumber,
  safetyNumberGroups,
  SAFETY_NUMBER_DIGITS,
  SAFETY_NUMBER_FINGERPRINT_LENGTH,
  SCANNABLE_SAFETY_NUMBER_MAGIC,
  SCANNABLE_SAFETY_NUMBER_LENGTH,
} from './safety-number.js';
export type { SafetyNumberParty, SafetyNumber, ScannedSafetyNumberResult } from './safety-number.js';
export {
  generateMediaKey,
  mediaCiphertextLength,
  MediaEncryptor,
  MediaDecryptor,
  encryptMedia,
  decryptMedia,
  encryptMediaIterable,
  decryptMediaIterable,
  mediaEncryptTransform,
  mediaDecryptTransform,
  MEDIA_CHUNK_KEY_INFO,
  MEDIA_HEADER_LENGTH,
  MEDIA_DIGEST_LENGTH,
} from './media.js';
export type { MediaEncryptorOptions, MediaDecryptorOptions } from './media.js';
export {
  RecoveryKey,
  ArchiveRootSecret,
  ArchiveAccessKeyPair,
  createArchiveKdfParams,
  encodeArchiveKeySource,
  decodeArchiveKeySource,
  ArchiveKeySourceTag,
  verifyArchiveAccessSignature,
  encryptArchive,
  decryptArchive,
  readArchiveHeader,
  ARCHIVE_ROOT_SECRET_LENGTH,
  ARCHIVE_ENCRYPTION_KEY_INFO,
  ARCHIVE_ACCESS_KEY_INFO,
  ARCHIVE_ACCESS_SIGNATURE_LABEL,
  RECOVERY_KEY_CHECKSUM_LABEL,
  RECOVERY_KEY_CHECKSUM_LENGTH,
  RECOVERY_KEY_CHARS,
  RECOVERY_KEY_GROUP,
} from './archive-key.js';
export type { ArchiveKdfParams, ArchiveKeySource, ArchiveHeader } from './archive-key.js';
export {
  SenderKeyLabel,
  OwnSenderKey,
  SenderKeyRecord,
  generateSenderKey,
  rotateSenderKey,
  needsSenderKeyRotation,
  encodeSenderKeyDistribution,
  decodeSenderKeyDistribution,
  processSenderKeyDistribution,
  encryptGroupMessage,
  decryptGroupMessage,
  readGroupMessageHeader,
  groupPaddedLength,
  serializeOwnSenderKey,
  deserializeOwnSenderKey,
  serializeSenderKeyRecord,
  deserializeSenderKeyRecord,
  GROUP_MESSAGE_SALT_LENGTH,
  GROUP_MESSAGE_HEADER_LENGTH,
  GROUP_MESSAGE_OVERHEAD,
  SENDER_KEY_DISTRIBUTION_LENGTH,
  SENDER_KEY_STORAGE_VERSION,
} from './sender-key.js';
export type { SenderKeyDistribution, GroupMessageHeader } from './sender-key.js';
export {
  GroupLabel,
  GroupPolicy,
  GroupOpType,
  GroupLog,
  signGroupOperation,
  decodeGroupOperation,
  createGroup,
  openGroup,
  receiveGroupOperation,
  proposeGroupOperation,
  diffGroupStates,
  serializeGroupLog,
  deserializeGroupLog,
  GROUP_LOG_STORAGE_VERSION,
} from './group-state.js';
export type {
  GroupMemberEntry,
  GroupOpBody,
  GroupOperation,
  GroupMemberState,
  GroupState,
  GroupEvent,
  GroupOperationStatus,
} from './group-state.js';
