import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error — a plain .mjs build script without type declarations
import { buildProtocolDoc } from '../../../scripts/build-protocol-doc.mjs';

describe('docs/protocol.md', () => {
  it('is up to date with docs/spec/*, constants.ts and test-vectors/ (run node scripts/build-protocol-doc.mjs)', () => {
    const committed = readFileSync(new URL('../../../docs/protocol.md', import.meta.url), 'utf8');
    expect(committed === (buildProtocolDoc() as string)).toBe(true);
  });
});
