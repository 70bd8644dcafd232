/**
 * @meshwhisper/protocol: everything on the wire that is not a cryptographic object — WebSocket
 * frames, HTTP bodies, content types, version negotiation and the error registry
 * (docs/spec/node-protocol.md). Cryptographic objects travel as opaque `bytes` in the
 * @meshwhisper/crypto encodings.
 */
export * from './constants.js';
export * from './errors.js';
export { decodeFrame, encodeFrame, negotiateVersion, sendRequestProblem, sendBatchProblem, deviceAuthProblem } from './frame.js';
export type { Decoded, DecodeFrameOptions, FrameInit, FrameKind } from './frame.js';
export { decodeFrameFast, encodeDeliverFrame, encodeSendResultFrame } from './fast-frames.js';
export type { FastEnvelope, FrameBuffer } from './fast-frames.js';
export { decodeBody, encodeBody } from './body.js';
export {
  DEVICE_SOCKET_METHOD,
  DEVICE_SOCKET_PATH,
  authBody,
  authSignedBytes,
  buildChallenge,
  encodeArchiveAuthHeader,
  encodeDeviceAuthHeader,
  fromBase64Url,
  parseChallenge,
  requestDigest,
  signArchiveAuth,
  signDeviceAuth,
  signUsernameOperation,
  signUsernameTransferConsent,
  toBase64Url,
} from './auth.js';
export type { ArchiveAccessSigner, LabelSigner, ParsedChallenge } from './auth.js';
// Generated message types and schemas (protobuf-es): `create(XSchema, …)`, `toBinary`, `fromBinary`.
export * from './gen/meshwhisper/v1/errors_pb.js';
export * from './gen/meshwhisper/v1/auth_pb.js';
export * from './gen/meshwhisper/v1/mailbox_pb.js';
export * from './gen/meshwhisper/v1/directory_pb.js';
export * from './gen/meshwhisper/v1/username_pb.js';
export * from './gen/meshwhisper/v1/blob_pb.js';
export * from './gen/meshwhisper/v1/frame_pb.js';
export * from './gen/meshwhisper/v1/content_pb.js';
export * from './gen/meshwhisper/v1/contact_pb.js';
export * from './gen/meshwhisper/v1/history_pb.js';
export * from './gen/meshwhisper/v1/client_state_pb.js';
export * from './gen/meshwhisper/v1/push_pb.js';
export * from './gen/meshwhisper/v1/link_pb.js';
export * from './gen/meshwhisper/v1/archive_pb.js';
export { create, fromBinary, toBinary } from '@bufbuild/protobuf';
