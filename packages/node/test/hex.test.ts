// hexKey (the send path's mailbox key) must equal the portable toHex byte for byte: hub, bus,
// rate-limit and push keys made by either must meet.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { toHex } from '@meshwhisper/crypto';
import { hexKey } from '../src/hex.js';

describe('hexKey', () => {
  it('equals toHex, also for views into a larger buffer and for empty input', () => {
    for (let i = 0; i < 200; i++) {
      const whole = new Uint8Array(randomBytes(64));
      const view = whole.subarray(i % 16, (i % 16) + 32);
      expect(hexKey(view)).toBe(toHex(view));
    }
    expect(hexKey(new Uint8Array(0))).toBe('');
    expect(hexKey(new Uint8Array([0, 1, 0xab, 0xff]))).toBe('0001abff');
  });
});
