import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ContactCardSchema, create, fromBase64Url, toBase64Url, toBinary } from '@meshwhisper/protocol';
import type { ContactCard } from '../../src/client/contact-card.js';
import {
  CONTACT_CARD_MAX_LENGTH,
  CONTACT_CARD_MAX_MAILBOX_IDS,
  CONTACT_CARD_MAX_NODE_LENGTH,
  CONTACT_CARD_PREFIX,
  decodeContactCard,
  encodeContactCard,
} from '../../src/client/contact-card.js';
import { SdkError, SdkErrorCode } from '../../src/client/errors.js';

const bytes = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

function card(overrides: Partial<ContactCard> = {}): ContactCard {
  return {
    node: 'https://chat.example.com',
    namespace: 'example.chat',
    accountKey: bytes(32),
    mailboxIds: [bytes(32), bytes(32), bytes(32)],
    username: 'alice',
    ...overrides,
  };
}

/** The text of a card built straight from the protobuf schema, bypassing encodeContactCard's checks. */
function rawCard(fields: Partial<{ version: number; node: string; namespace: string; accountKey: Uint8Array; mailboxIds: Uint8Array[]; username: string }>): string {
  const m = create(ContactCardSchema, {
    version: 1,
    node: 'https://chat.example.com',
    namespace: 'example.chat',
    accountKey: bytes(32),
    mailboxIds: [bytes(32)],
    ...fields,
  });
  return CONTACT_CARD_PREFIX + toBase64Url(toBinary(ContactCardSchema, m));
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof SdkError) return e.code;
    throw e;
  }
  throw new Error('expected an SdkError, nothing was thrown');
}

function decodeError(text: string): SdkError {
  try {
    decodeContactCard(text);
  } catch (e) {
    expect(e).toBeInstanceOf(SdkError);
    expect((e as SdkError).code).toBe(SdkErrorCode.INVALID_CONTACT_CARD);
    return e as SdkError;
  }
  throw new Error(`decodeContactCard accepted ${JSON.stringify(text)}`);
}

describe('encodeContactCard / decodeContactCard', () => {
  it('round-trips a card with a username and three mailbox ids', () => {
    const c = card();
    const text = encodeContactCard(c);
    expect(text.startsWith('mwc1:')).toBe(true);
    expect(text.slice(5)).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeContactCard(text)).toEqual(c);
  });

  it('round-trips a card without a username (no username key on the result)', () => {
    const c = card({ mailboxIds: [bytes(32)] });
    delete c.username;
    const out = decodeContactCard(encodeContactCard(c));
    expect(out).toEqual(c);
    expect('username' in out).toBe(false);
  });

  it('writes exactly the documented format: "mwc1:" + unpadded base64url of the protobuf binary', () => {
    const key = new Uint8Array(32).fill(0xaa);
    const id = new Uint8Array(32).fill(0xbb);
    const text = encodeContactCard({ node: 'http://n.test', namespace: 'ns', accountKey: key, mailboxIds: [id], username: 'bo' });
    // Hand-assembled protobuf: tag 1 varint 1; tag 2 "http://n.test"; tag 3 "ns"; tag 4 key; tag 5 id; tag 6 "bo".
    const ascii = (s: string): number[] => [...s].map((ch) => ch.charCodeAt(0));
    const expected = Uint8Array.from([
      0x08, 0x01,
      0x12, 13, ...ascii('http://n.test'),
      0x1a, 2, ...ascii('ns'),
      0x22, 32, ...key,
      0x2a, 32, ...id,
      0x32, 2, ...ascii('bo'),
    ]);
    expect(text).toBe('mwc1:' + Buffer.from(expected).toString('base64url'));
    expect(text).not.toContain('=');
  });

  it('the largest valid card stays within the decode limit and round-trips', () => {
    const host = 'https://' + 'a'.repeat(CONTACT_CARD_MAX_NODE_LENGTH - 'https://'.length);
    const c = card({
      node: host,
      namespace: 'n'.repeat(64),
      username: 'u'.repeat(64),
      mailboxIds: Array.from({ length: CONTACT_CARD_MAX_MAILBOX_IDS }, () => bytes(32)),
    });
    const text = encodeContactCard(c);
    expect(text.length).toBeLessThanOrEqual(CONTACT_CARD_MAX_LENGTH);
    expect(decodeContactCard(text)).toEqual(c);
  });

  it('decoded byte arrays are independent copies', () => {
    const text = encodeContactCard(card());
    const a = decodeContactCard(text);
    a.accountKey.fill(0);
    a.mailboxIds[0]!.fill(0);
    const b = decodeContactCard(text);
    expect(b.accountKey.some((x) => x !== 0)).toBe(true);
    expect(b.mailboxIds[0]!.some((x) => x !== 0)).toBe(true);
  });

  it.each<[string, Partial<ContactCard> | (() => ContactCard)]>([
    ['a 31-byte account key', { accountKey: bytes(31) }],
    ['a 33-byte account key', { accountKey: bytes(33) }],
    ['no mailbox ids', { mailboxIds: [] }],
    ['17 mailbox ids', { mailboxIds: Array.from({ length: 17 }, () => bytes(32)) }],
    ['a 16-byte mailbox id', { mailboxIds: [bytes(32), bytes(16)] }],
    ['a repeated mailbox id', () => { const id = bytes(32); return card({ mailboxIds: [id, id.slice()] }); }],
    ['an ftp node', { node: 'ftp://chat.example.com' }],
    ['a relative node', { node: '/chat' }],
    ['a node with credentials', { node: 'https://me:pw@chat.example.com' }],
    ['a node with a query', { node: 'https://chat.example.com/?x=1' }],
    ['a node with a fragment', { node: 'https://chat.example.com/#x' }],
    ['a node with surrounding spaces', { node: ' https://chat.example.com' }],
    ['a node over the length limit', { node: 'https://' + 'a'.repeat(CONTACT_CARD_MAX_NODE_LENGTH) }],
    ['an empty namespace', { namespace: '' }],
    ['a 65-character namespace', { namespace: 'n'.repeat(65) }],
    ['an upper-case namespace', { namespace: 'Example' }],
    ['an empty username', { username: '' }],
    ['a 65-character username', { username: 'u'.repeat(65) }],
    ['a username with a space', { username: 'al ice' }],
    ['a non-string node', { node: 42 as unknown as string }],
    ['a non-array mailboxIds', { mailboxIds: 'x' as unknown as Uint8Array[] }],
    ['a number array as a key', { accountKey: Array.from({ length: 32 }, () => 1) as unknown as Uint8Array }],
  ])('encode rejects %s with INVALID_ARGUMENT', (_name, o) => {
    const c = typeof o === 'function' ? o() : card(o);
    expect(codeOf(() => encodeContactCard(c))).toBe(SdkErrorCode.INVALID_ARGUMENT);
  });

  it('encode rejects a non-object', () => {
    expect(codeOf(() => encodeContactCard(null as unknown as ContactCard))).toBe(SdkErrorCode.INVALID_ARGUMENT);
  });

  it('accepts http nodes, ports and paths', () => {
    for (const node of ['http://127.0.0.1:8080', 'https://example.com/mw', 'https://[::1]:443']) {
      expect(decodeContactCard(encodeContactCard(card({ node }))).node).toBe(node);
    }
  });
});

describe('decodeContactCard rejects bad input with INVALID_CONTACT_CARD', () => {
  const good = encodeContactCard(card());
  const payload = good.slice(CONTACT_CARD_PREFIX.length);

  it.each<[string, string]>([
    ['the empty string', ''],
    ['no prefix', payload],
    ['an upper-case prefix', 'MWC1:' + payload],
    ['another scheme', 'https://chat.example.com'],
    ['the prefix alone', 'mwc1:'],
    ['a padded payload', good + '='],
    ['a standard-base64 character', 'mwc1:' + payload.slice(0, -1) + '+'],
    ['a trailing newline', good + '\n'],
    ['a leading space', ' ' + good],
    ['an impossible base64 length', good + 'A'],
    ['bytes that are not protobuf', 'mwc1:' + toBase64Url(Uint8Array.of(0xff, 0xff, 0xff, 0xff))],
    ['a truncated protobuf', 'mwc1:' + toBase64Url(fromBase64Url(payload)!.subarray(0, 40))],
    ['a missing version (0)', rawCard({ version: 0 })],
    ['a 31-byte account key', rawCard({ accountKey: bytes(31) })],
    ['no mailbox ids', rawCard({ mailboxIds: [] })],
    ['17 mailbox ids', rawCard({ mailboxIds: Array.from({ length: 17 }, () => bytes(32)) })],
    ['a 33-byte mailbox id', rawCard({ mailboxIds: [bytes(33)] })],
    ['a javascript: node', rawCard({ node: 'javascript:alert(1)' })],
    ['an empty node', rawCard({ node: '' })],
    ['an empty namespace', rawCard({ namespace: '' })],
    ['a namespace with markup', rawCard({ namespace: '<b>x</b>' })],
    ['a username with a newline', rawCard({ username: 'a\nb' })],
    ['an oversize input', 'mwc1:' + 'A'.repeat(CONTACT_CARD_MAX_LENGTH)],
  ])('%s', (_name, text) => {
    decodeError(text);
  });

  it('rejects a non-canonical final character (stray low bits)', () => {
    // 3 mailbox ids → the protobuf length is not a multiple of 3, so the last character has spare bits.
    const last = payload.at(-1)!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const twin = alphabet[alphabet.indexOf(last) ^ 1]!;
    const tampered = good.slice(0, -1) + twin;
    // Same bytes once decoded, yet a different text: must not be accepted as the same card.
    expect(fromBase64Url(tampered.slice(5))).toEqual(fromBase64Url(payload));
    decodeError(tampered);
  });

  it('a non-string is refused with the same code', () => {
    expect(codeOf(() => decodeContactCard(undefined as unknown as string))).toBe(SdkErrorCode.INVALID_CONTACT_CARD);
    expect(codeOf(() => decodeContactCard(Uint8Array.of(1) as unknown as string))).toBe(SdkErrorCode.INVALID_CONTACT_CARD);
  });

  it('a card from a newer app (protobuf version 2) says to update the app', () => {
    const e = decodeError(rawCard({ version: 2 }));
    expect(e.message).toMatch(/version 2/);
    expect(e.message).toMatch(/update the app/);
  });

  it('a newer text format ("mwc2:") says to update the app; garbage after it does not matter', () => {
    const e = decodeError('mwc2:anything at all');
    expect(e.message).toMatch(/update the app/);
    expect(decodeError('mwc0:' + payload).message).not.toMatch(/update/);
  });

  it('ignores unknown protobuf fields in a version-1 card (forward-compatible additions)', () => {
    const bin = fromBase64Url(payload)!;
    const extended = new Uint8Array(bin.length + 3);
    extended.set(bin);
    extended.set([0xf8, 0x01, 0x07], bin.length); // field 31, varint 7
    expect(decodeContactCard('mwc1:' + toBase64Url(extended))).toEqual(decodeContactCard(good));
  });
});

describe('decodeContactCard properties (fast-check, seeded)', () => {
  const settings = { seed: 0x5eed, numRuns: 400 };

  function onlyCardErrors(text: string): void {
    try {
      decodeContactCard(text);
    } catch (e) {
      if (!(e instanceof SdkError) || e.code !== SdkErrorCode.INVALID_CONTACT_CARD) throw e;
    }
  }

  it('random strings never throw anything but INVALID_CONTACT_CARD', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ maxLength: 3000 })), (s) => {
        onlyCardErrors(s);
        onlyCardErrors('mwc1:' + s);
      }),
      settings,
    );
  });

  it('random bytes behind the prefix never throw anything but INVALID_CONTACT_CARD', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1600 }), (b) => {
        onlyCardErrors('mwc1:' + toBase64Url(b));
      }),
      settings,
    );
  });

  const cardArb: fc.Arbitrary<ContactCard> = fc.record(
    {
      node: fc.constantFrom('https://chat.example.com', 'http://127.0.0.1:8080', 'https://a.b/path'),
      namespace: fc.stringMatching(/^[a-z0-9][a-z0-9_.-]{0,63}$/),
      accountKey: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      mailboxIds: fc.uniqueArray(fc.uint8Array({ minLength: 32, maxLength: 32 }), {
        minLength: 1,
        maxLength: CONTACT_CARD_MAX_MAILBOX_IDS,
        selector: (id) => toBase64Url(id),
      }),
      username: fc.stringMatching(/^[a-z0-9][a-z0-9_.-]{0,63}$/),
    },
    { requiredKeys: ['node', 'namespace', 'accountKey', 'mailboxIds'] },
  );

  it('encode → decode round-trips any valid card', () => {
    fc.assert(
      fc.property(cardArb, (c) => {
        const text = encodeContactCard(c);
        expect(text.length).toBeLessThanOrEqual(CONTACT_CARD_MAX_LENGTH);
        expect(decodeContactCard(text)).toEqual(c);
      }),
      settings,
    );
  });

  it('valid cards with one byte changed either decode or fail with INVALID_CONTACT_CARD', () => {
    fc.assert(
      fc.property(cardArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (c, at, xor) => {
        const bin = fromBase64Url(encodeContactCard(c).slice(5))!;
        bin[at % bin.length]! ^= xor;
        onlyCardErrors('mwc1:' + toBase64Url(bin));
      }),
      settings,
    );
  });
});
