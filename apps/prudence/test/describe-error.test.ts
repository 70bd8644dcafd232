/**
 * Prudence's sentences for SDK errors (lib/messenger.ts describeError): every code stays visible
 * for bug reports, and the ones the e2e suite cannot reach cheaply (the device limit needs six
 * devices) say what to do.
 */
import { describe, expect, it } from 'vitest';
import { SdkError, SdkErrorCode } from '@meshwhisper/sdk';
import { describeError } from '../src/lib/messenger.js';

describe('describeError', () => {
  it('keeps every SDK error code in the sentence shown to the user', () => {
    for (const code of Object.values(SdkErrorCode)) {
      const text = describeError(new SdkError(code, 'detail'));
      if (code === SdkErrorCode.UNREACHABLE) expect(text).toMatch(/cannot be reached/);
      else expect(text, code).toContain(code);
    }
  });

  it('the device limit (MW_SDK_DEVICE_LIMIT, from acceptLinkOffer and restoreFromArchive) tells the user to remove a device first', () => {
    expect(describeError(new SdkError(SdkErrorCode.DEVICE_LIMIT, 'this account already has 6 devices (the limit is 6): revoke one first'))).toBe(
      'Your account already has as many devices as it may have: remove one first (MW_SDK_DEVICE_LIMIT).',
    );
  });

  it('a node refusal shows the node code; a username taken is a sentence', () => {
    expect(describeError(new SdkError(SdkErrorCode.NODE_ERROR, 'forbidden', 'MW_AUTH_FORBIDDEN'))).toBe('forbidden (MW_AUTH_FORBIDDEN)');
    expect(describeError(new SdkError(SdkErrorCode.NODE_ERROR, 'taken', 'MW_USERNAME_TAKEN'))).toBe('That username is taken.');
  });
});
