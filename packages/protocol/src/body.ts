/**
 * Safe decoding of protobuf HTTP bodies: any bytes become a message or a ProtocolError, never an exception.
 */
import { fromBinary, toBinary, create } from '@bufbuild/protobuf';
import type { DescMessage, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import { MAX_HTTP_BODY_BYTES } from './constants.js';
import { ErrorCode, ProtocolError } from './errors.js';
import type { Decoded } from './frame.js';

export function decodeBody<Desc extends DescMessage>(
  schema: Desc,
  bytes: Uint8Array,
  validate?: (m: MessageShape<Desc>) => string | undefined,
  maxBytes = MAX_HTTP_BODY_BYTES,
): Decoded<MessageShape<Desc>> {
  try {
    if (bytes.length > maxBytes) return { ok: false, error: new ProtocolError(ErrorCode.TOO_LARGE, `body of ${bytes.length} bytes exceeds ${maxBytes}`) };
    let msg: MessageShape<Desc>;
    try {
      msg = fromBinary(schema, bytes);
    } catch {
      return { ok: false, error: new ProtocolError(ErrorCode.MALFORMED, `body is not a valid ${schema.name}`) };
    }
    const problem = validate?.(msg);
    return problem === undefined ? { ok: true, value: msg } : { ok: false, error: new ProtocolError(ErrorCode.BAD_REQUEST, `${schema.name}: ${problem}`) };
  } catch {
    return { ok: false, error: new ProtocolError(ErrorCode.MALFORMED, `body could not be decoded`) };
  }
}

export function encodeBody<Desc extends DescMessage>(schema: Desc, init: MessageInitShape<Desc>): Uint8Array {
  return toBinary(schema, create(schema, init));
}
