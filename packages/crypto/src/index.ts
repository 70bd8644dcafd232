export * from './errors.js';
export * from './constants.js';
export * from './bytes.js';
export { ByteReader, ByteWriter } from './encoding.js';
export * from './context.js';
export * from './primitives/index.js';
export * from './keys.js';
export * from './prekeys.js';
