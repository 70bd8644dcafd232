export * from './errors.js';
export * from './constants.js';
export * from './bytes.js';
export { ByteReader, ByteWriter } from './encoding.js';
export * from './context.js';
export * from './primitives/index.js';
export * from './keys.js';
export * from './prekeys.js';
export * from './pqxdh.js';
export * from './stores.js';
export * from './session.js';
export {
  RatchetState,
  initRatchetAsInitiator,
  initRatchetAsResponder,
  ratchetEncrypt,
  ratchetDecrypt,
  serializeRatchetState,
  deserializeRatchetState,
  hasReceivedMessage,
} from './ratchet.js';
export * from './padding.js';
export * from './sealed-sender.js';
export * from './prekey-rotation.js';
