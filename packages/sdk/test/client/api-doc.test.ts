/**
 * docs/api.md must cover the whole public client surface: every public method and property of
 * MeshWhisper, every option of MeshWhisper.create, every event and every SdkErrorCode. A member
 * added without documentation fails here.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MeshWhisper, SdkErrorCode } from '../../src/index.js';

const doc = readFileSync(new URL('../../../../docs/api.md', import.meta.url), 'utf8');
const source = readFileSync(new URL('../../src/client/types.ts', import.meta.url), 'utf8');

/** The member names declared in `interface <name> { … }` of types.ts (top-level members only). */
function interfaceKeys(name: string): string[] {
  const start = source.indexOf(`export interface ${name} {`);
  expect(start, `interface ${name} in types.ts`).toBeGreaterThanOrEqual(0);
  const body = source.slice(start, source.indexOf('\n}', start));
  return [...body.matchAll(/^ {2}(?:readonly )?([A-Za-z]+)\??:/gm)].map((m) => m[1]!);
}

describe('docs/api.md covers the public client API', () => {
  it('every public method and property of MeshWhisper', () => {
    const members = Object.getOwnPropertyNames(MeshWhisper.prototype).filter((n) => n !== 'constructor');
    expect(members.length).toBeGreaterThan(40);
    const missing = members.filter((n) => !doc.includes(`\`${n}`) && !doc.includes(`, ${n}`) && !doc.includes(`\`${n}(`));
    expect(missing).toEqual([]);
    // Static API and instance properties set in the constructor.
    for (const n of ['MeshWhisper.create', 'account', 'namespace']) expect(doc.includes(n), n).toBe(true);
  });

  it('every option of MeshWhisper.create', () => {
    const options = interfaceKeys('MeshWhisperOptions');
    expect(options).toContain('holdOnIdentityChange');
    expect(options.filter((o) => !doc.includes(`| \`${o}\``))).toEqual([]);
  });

  it('every event', () => {
    const events = interfaceKeys('MeshWhisperEvents');
    expect(events).toContain('contactRequest');
    expect(events.filter((e) => !doc.includes(`\`${e}\``))).toEqual([]);
  });

  it('every SdkErrorCode', () => {
    expect(Object.values(SdkErrorCode).filter((c) => !doc.includes(c))).toEqual([]);
  });

  it('every logger event, with its level: the table of §Logging and the code agree', () => {
    const src = new URL('../../src/', import.meta.url);
    const inCode = new Map<string, Set<string>>();
    for (const f of readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((n) => n.endsWith('.ts'))) {
      for (const m of readFileSync(new URL(f, src), 'utf8').matchAll(/\blog\w*\s*\.\s*(debug|info|warn|error)\(\s*['"]([a-z0-9.-]+)['"]/g)) {
        inCode.set(m[2]!, (inCode.get(m[2]!) ?? new Set()).add(m[1]!));
      }
    }
    expect(inCode.size).toBeGreaterThan(40);
    const inDoc = new Map([...doc.matchAll(/^\| `([a-z0-9.-]+)` \| ([a-z, ]+) \| /gm)].filter((m) => m[1]!.includes('.')).map((m) => [m[1]!, m[2]!]));
    const code = [...inCode].map(([e, levels]) => `${e} ${[...levels].sort().join(', ')}`).sort();
    const documented = [...inDoc].map(([e, levels]) => `${e} ${levels}`).sort();
    expect(documented).toEqual(code);
  });
});
