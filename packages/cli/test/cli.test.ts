// Dispatch, --version, --help, keys vapid, the .env reader, offline push checks, progress.
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.js';
import { checkApns, checkFcm, checkWebPush } from '../src/doctor/push.js';
import { envLine, parseEnv } from '../src/env-file.js';
import { withProgress } from '../src/io.js';
import { loadNodeEnv } from '../src/node-env.js';
import { generateVapidKeys, vapidProblems } from '../src/vapid.js';
import { captureIo, cli, freePort, removeDir, tempDir, writeEnv, writePushCredentials } from './helpers.js';

describe('meshwhisper', () => {
  it('--version prints the package version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    for (const flag of ['--version', '-v']) expect(await cli(flag)).toEqual({ code: 0, out: pkg.version, err: '' });
  });

  it('--help lists every command with examples; unknown commands and options exit 2', async () => {
    const h = await cli('--help');
    expect(h.code).toBe(0);
    for (const c of ['init [dir]', 'doctor [url]', 'keys vapid', 'backup [list]', 'restore FILE', 'examples:', 'meshwhisper init my-chat --yes']) expect(h.out).toContain(c);
    expect((await cli('doctor', '--help')).out).toContain('examples:');
    const u = await cli('frobnicate');
    expect(u.code).toBe(2);
    expect(u.err).toMatch(/MW_CLI_USAGE: unknown command "frobnicate"/);
    expect((await cli('doctor', '--bogus')).code).toBe(2);
    expect((await cli('doctor', 'a', 'b')).code).toBe(2);
    expect((await cli('doctor', 'x', '--timeout', '5')).code).toBe(2);
  });

  it('<command> --help (and help <command>) prints that command\'s options and examples only', async () => {
    for (const [command, flag] of [['init', '--app'], ['doctor', '--data-dir'], ['keys', '--subject'], ['backup', '--keep'], ['restore', '--force']] as const) {
      const h = await cli(command, '--help');
      expect(h.code, command).toBe(0);
      expect(h.out).toMatch(new RegExp(`^usage: meshwhisper ${command}`));
      expect(h.out).toContain(flag);
      expect(h.out).toContain('examples:');
      for (const other of ['init', 'doctor', 'keys', 'backup', 'restore'].filter((c) => c !== command)) expect(h.out, `${command} --help`).not.toContain(`meshwhisper ${other} `);
      expect(await cli('help', command)).toEqual(h);
    }
    const u = await cli('help', 'frobnicate');
    expect(u.code).toBe(2);
    expect(u.err).toContain('meshwhisper: MW_CLI_USAGE: unknown command "frobnicate"');
    expect((await cli('help', 'constructor')).code).toBe(2);
    // A usage error points at the command's own help.
    expect((await cli('init', '--bogus')).err).toContain('run `meshwhisper init --help`');
  });

  it('every error reads `meshwhisper: CODE: message`, the backup module\'s included', async () => {
    const dir = tempDir();
    try {
      const cases: [string[], number, RegExp][] = [
        [['init', join(dir, 'a'), '--yes', '--url', 'notaurl'], 2, /^meshwhisper: MW_CLI_INVALID_VALUE: --url must be an absolute http:\/\/ or https:\/\/ URL/],
        [['init', join(dir, 'b'), '--yes', '--url', 'chat.example.com'], 2, /^meshwhisper: MW_CLI_INVALID_VALUE: --url/],
        [['init', join(dir, 'c'), '--yes', '--url', 'https://chat.example.com/?x=1'], 2, /^meshwhisper: MW_CLI_INVALID_VALUE: --url must not have a query/],
        [['restore', join(dir, 'nofile.sqlite3'), '--data-dir', dir], 1, /^meshwhisper: MW_BACKUP_NOT_FOUND: no backup file at /],
        [['backup', '--data-dir', join(dir, 'missing')], 1, /^meshwhisper: MW_BACKUP_NOT_FOUND: /],
        [['backup', '--keep', 'abc', '--data-dir', dir], 2, /^meshwhisper: MW_CLI_INVALID_VALUE: --keep must be an integer/],
        [['backup', 'frob', '--data-dir', dir], 2, /^meshwhisper: MW_CLI_USAGE: /],
      ];
      for (const [argv, code, first] of cases) {
        const r = await cli(...argv);
        expect(r.code, argv.join(' ')).toBe(code);
        expect(r.err.split('\n')[0], argv.join(' ')).toMatch(first);
        expect(r.err, argv.join(' ')).not.toContain('meshwhisper-node');
      }
      // Nothing was written for a refused URL.
      expect(existsSync(join(dir, 'a'))).toBe(false);
      // Written-out URLs are accepted, ws(s):// as http(s)://.
      for (const url of ['https://chat.example.com', 'http://localhost:9000', 'wss://chat.example.com/mw', 'http://[::1]:8080']) expect((await cli('init', join(dir, `ok-${encodeURIComponent(url)}`), '--yes', '--url', url)).code, url).toBe(0);
    } finally {
      removeDir(dir);
    }
  });

  it('keys vapid prints a matching pair as .env lines (and JSON)', async () => {
    const r = await cli('keys', 'vapid', '--subject', 'mailto:ops@example.com');
    expect(r.code).toBe(0);
    const env = parseEnv(r.out);
    expect([...env.keys()]).toEqual(['VAPID_PUBLIC_KEY', 'VAPID_PRIVATE_KEY', 'VAPID_SUBJECT']);
    expect(vapidProblems(env.get('VAPID_PUBLIC_KEY') ?? '', env.get('VAPID_PRIVATE_KEY') ?? '')).toEqual([]);
    expect(r.err).toMatch(/secret/);
    const j = await cli('keys', 'vapid', '--json');
    const k = JSON.parse(j.out) as { publicKey: string; privateKey: string };
    expect(vapidProblems(k.publicKey, k.privateKey)).toEqual([]);
    expect(k.publicKey).not.toBe(env.get('VAPID_PUBLIC_KEY'));
    expect((await cli('keys', 'rsa')).code).toBe(2);
    expect((await cli('keys', 'vapid', '--subject', 'ops')).code).toBe(2);
  });
});

describe('the node\'s settings', () => {
  it('./.env in the working directory is read by default; the environment fills only node setting names the file lacks', async () => {
    const dir = tempDir();
    try {
      const port = String(await freePort());
      writeEnv(dir, { PORT: port, DATA_DIR: 'var/data' });
      const env = await loadNodeEnv(undefined, dir, { PORT: '9', HOST: '::1', UNRELATED: 'x' });
      expect(env.file).toBe(join(dir, '.env'));
      expect(env.get('PORT')).toBe(port);
      expect(env.get('HOST')).toBe('::1');
      expect(env.get('UNRELATED')).toBeUndefined();
      expect(env.path(env.value('DATA_DIR'))).toBe(join(dir, 'var/data'));
      expect(env.value('LOG_LEVEL')).toBe('info'); // the node's default
      const c = captureIo({ cwd: dir });
      expect(await runCli(['doctor', '--json', '--timeout', '300'], c.io)).toBe(1); // nothing listens there
      expect(JSON.parse(c.out.join('\n'))).toMatchObject({ target: `http://127.0.0.1:${port}/`, envFile: join(dir, '.env') });
    } finally {
      removeDir(dir);
    }
  });
});

describe('VAPID keys', () => {
  it('a generated pair has the RFC 8292 formats and matches', () => {
    const k = generateVapidKeys();
    expect(Buffer.from(k.publicKey, 'base64url')).toHaveLength(65);
    expect(Buffer.from(k.publicKey, 'base64url')[0]).toBe(4);
    expect(Buffer.from(k.privateKey, 'base64url')).toHaveLength(32);
    expect(vapidProblems(k.publicKey, k.privateKey)).toEqual([]);
  });
  it('keys from different pairs, off-curve points and wrong lengths are reported', () => {
    const a = generateVapidKeys();
    const b = generateVapidKeys();
    expect(vapidProblems(a.publicKey, b.privateKey)).toEqual(['VAPID_PUBLIC_KEY does not belong to VAPID_PRIVATE_KEY (keys from different pairs)']);
    const offCurve = Buffer.alloc(65, 1);
    offCurve[0] = 4;
    expect(vapidProblems(offCurve.toString('base64url'), a.privateKey)[0]).toMatch(/not a point on the P-256 curve/);
    expect(vapidProblems(a.publicKey.slice(0, 40), a.privateKey)[0]).toMatch(/65-byte/);
    expect(vapidProblems(a.publicKey, 'AAAA')[0]).toMatch(/32 bytes/);
    expect(vapidProblems('not base64!', a.privateKey)[0]).toMatch(/not base64url/);
  });
});

describe('.env reader and writer', () => {
  it('reads what init and people write', () => {
    const env = parseEnv(['# comment', '', 'A=1', 'export B=two words # note', 'C="quoted # not a comment"', "D='single'", 'E=', 'F = spaced'].join('\n'));
    expect(Object.fromEntries(env)).toEqual({ A: '1', B: 'two words', C: 'quoted # not a comment', D: 'single', E: '', F: 'spaced' });
    expect(() => parseEnv('this is not an assignment')).toThrow(/\.env:1: not a NAME=value line/);
    expect(() => parseEnv('A="open')).toThrow(/unterminated quote/);
  });
  it('writes values the node, Compose and a shell all read alike; refuses ambiguous ones', () => {
    expect(envLine('A', 'default:signed')).toBe('A=default:signed');
    expect(envLine('A', 'two words')).toBe('A="two words"');
    expect(parseEnv(envLine('A', 'x #y')).get('A')).toBe('x #y');
    expect(() => envLine('A', 'a$b')).toThrow(/\$/);
    expect(() => envLine('A', 'a\nb')).toThrow(/newline/);
    expect(() => envLine('1A', 'x')).toThrow(/not a valid variable name/);
  });
});

describe('push credential checks (offline)', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => removeDir(dir));

  it('nothing configured: skipped', async () => {
    const env = await loadNodeEnv(writeEnv(dir, { PORT: '1' }, 'empty.env'), dir, {});
    for (const r of [await checkWebPush(env), await checkApns(env), await checkFcm(env)]) expect(r.status).toBe('skip');
  });

  it('mismatched VAPID keys and a missing subject: FAIL', async () => {
    const a = generateVapidKeys();
    const env = await loadNodeEnv(writeEnv(dir, { VAPID_PUBLIC_KEY: a.publicKey, VAPID_PRIVATE_KEY: generateVapidKeys().privateKey }, 'vapid.env'), dir, {});
    const r = await checkWebPush(env);
    expect(r.status).toBe('fail');
    expect(r.message).toMatch(/not VAPID_SUBJECT.*do(es)? not belong/);
    expect(r.message).not.toContain(env.get('VAPID_PRIVATE_KEY'));
  });

  it('a valid pair without VAPID_SUBJECT: FAIL whose fix is the subject, not new keys', async () => {
    const k = generateVapidKeys();
    const env = await loadNodeEnv(writeEnv(dir, { VAPID_PUBLIC_KEY: k.publicKey, VAPID_PRIVATE_KEY: k.privateKey }, 'vapid-nosub.env'), dir, {});
    const r = await checkWebPush(env);
    expect(r.status).toBe('fail');
    expect(r.message).toMatch(/VAPID_SUBJECT is empty/);
    expect(r.fix).toMatch(/^set VAPID_SUBJECT=/);
    const ok = await loadNodeEnv(writeEnv(dir, { VAPID_PUBLIC_KEY: k.publicKey, VAPID_PRIVATE_KEY: k.privateKey, VAPID_SUBJECT: 'https://chat.example.com' }, 'vapid-ok.env'), dir, {});
    expect(await checkWebPush(ok)).toMatchObject({ status: 'ok' });
  });

  it('APNs: an RSA key instead of the .p8, bad ids, a world-readable key file', async () => {
    const rsa = join(dir, 'rsa.p8');
    writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    const env = await loadNodeEnv(writeEnv(dir, { APNS_KEY_FILE: 'rsa.p8', APNS_KEY_ID: 'short', APNS_TEAM_ID: 'TEAM123456', APNS_BUNDLE_ID: 'nodots' }, 'apns.env'), dir, {});
    const r = await checkApns(env);
    expect(r.status).toBe('fail');
    expect(r.message).toMatch(/rsa key, APNs token auth needs an EC P-256 key/);
    expect(r.message).toMatch(/APNS_KEY_ID must be/);
    expect(r.message).toMatch(/APNS_BUNDLE_ID must be the app bundle id/);
    const { apnsKeyFile } = writePushCredentials(dir);
    chmodSync(apnsKeyFile, 0o644);
    const ok = await loadNodeEnv(writeEnv(dir, { APNS_KEY_FILE: apnsKeyFile, APNS_KEY_ID: 'ABC123DEFG', APNS_TEAM_ID: 'TEAM123456', APNS_BUNDLE_ID: 'com.example.chat' }, 'apns2.env'), dir, {});
    const w = await checkApns(ok);
    expect(w.status).toBe('warn');
    expect(w.fix).toMatch(/chmod 600/);
    const missing = await loadNodeEnv(writeEnv(dir, { APNS_KEY_FILE: 'nope.p8', APNS_KEY_ID: 'ABC123DEFG', APNS_TEAM_ID: 'TEAM123456', APNS_BUNDLE_ID: 'com.example.chat' }, 'apns3.env'), dir, {});
    expect((await checkApns(missing)).message).toMatch(/nope\.p8 does not exist/);
  });

  it('FCM: a client config instead of a service account, missing fields', async () => {
    const file = join(dir, 'google-services.json');
    writeFileSync(file, JSON.stringify({ project_info: { project_id: 'x' } }), { mode: 0o600 });
    const env = await loadNodeEnv(writeEnv(dir, { FCM_SERVICE_ACCOUNT_FILE: file }, 'fcm.env'), dir, {});
    const r = await checkFcm(env);
    expect(r.status).toBe('fail');
    expect(r.message).toMatch(/expected "service_account"/);
    expect(r.message).toMatch(/"private_key" is missing/);
    const { fcmFile } = writePushCredentials(dir);
    const good = await loadNodeEnv(writeEnv(dir, { FCM_SERVICE_ACCOUNT_FILE: fcmFile }, 'fcm2.env'), dir, {});
    expect(await checkFcm(good)).toMatchObject({ status: 'ok' });
  });
});

describe('progress', () => {
  it('stays quiet for quick work and shows a line for work over the threshold', async () => {
    const c = captureIo();
    await withProgress(c.io, 'quick', Promise.resolve(1), 50);
    expect(c.err).toEqual([]);
    await withProgress(c.io, 'slow thing', new Promise((r) => setTimeout(r, 120)), 50);
    expect(c.err).toEqual(['… slow thing']);
    const raw: string[] = [];
    const tty = captureIo({ errIsTTY: true, errRaw: (t) => void raw.push(t) });
    await withProgress(tty.io, 'spinning', new Promise((r) => setTimeout(r, 300)), 50);
    expect(raw.some((t) => t.includes('spinning'))).toBe(true);
    expect(raw.at(-1)).toMatch(/^\r +\r$/); // line cleared afterwards
  });
});
