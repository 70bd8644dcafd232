// `meshwhisper init`: the generated deployment, its .env against the node's schema, modes,
// .gitignore, the overwrite rule, and a node started from the generated settings.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CONFIG_SCHEMA, loadConfig } from '@meshwhisper/node';
import { runInit } from '../src/init.js';
import { parseEnv } from '../src/env-file.js';
import { pushVariables, schemaVariables } from '../src/env-template.js';
import { PUSH_SETTINGS } from '../src/push-settings.js';
import { vapidProblems } from '../src/vapid.js';
import { captureIo, check, cli, doctorJson, freePort, removeDir, startNode, tempDir, writeEnv } from './helpers.js';

const mode = (p: string): number => statSync(p).mode & 0o777;
const readEnv = (dir: string): Map<string, string> => parseEnv(readFileSync(join(dir, '.env'), 'utf8'));

describe('init --yes', () => {
  let root: string;
  let dir: string;
  beforeEach(() => {
    root = tempDir();
    dir = join(root, 'deploy');
  });
  afterEach(() => removeDir(root));

  it('writes .env (0600), compose.yaml, README.md and a .gitignore that lists the secrets', async () => {
    const r = await cli('init', dir, '--yes');
    expect(r.code, r.err).toBe(0);
    for (const f of ['.env', 'compose.yaml', 'README.md', '.gitignore']) expect(existsSync(join(dir, f)), f).toBe(true);
    expect(mode(join(dir, '.env'))).toBe(0o600);
    expect(mode(join(dir, 'compose.yaml'))).toBe(0o644);
    const ignored = readFileSync(join(dir, '.gitignore'), 'utf8').split('\n');
    expect(ignored).toEqual(expect.arrayContaining(['.env', 'secrets/', 'data/']));
    expect(r.out).toMatch(/created {2}\.env {2}\(0600, secret\)/);
    const compose = readFileSync(join(dir, 'compose.yaml'), 'utf8');
    expect(compose).toContain('env_file: .env');
    expect(compose).toContain('meshwhisper-data:/data');
    expect(compose).toContain('"${PORT:-8080}:${PORT:-8080}"');
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toContain('meshwhisper doctor http://localhost:8080 --env .env');
    // No temporary files left behind.
    expect(readFileSync(join(dir, '.gitignore'), 'utf8')).not.toContain('.tmp');
  });

  it('.env holds exactly the node schema variables (in schema order) plus the push variables — no drift', async () => {
    await runInit({ dir, yes: true }, captureIo().io);
    const env = readEnv(dir);
    const keys = [...env.keys()];
    const schemaKeys = Object.values(CONFIG_SCHEMA).map((s) => s.env);
    expect(keys.slice(0, schemaKeys.length)).toEqual(schemaKeys);
    expect(new Set(keys)).toEqual(new Set([...schemaVariables(), ...pushVariables()]));
    expect(keys.length).toBe(new Set(keys).size);
    // Push names the schema defines are written once, from the schema.
    expect(pushVariables().every((n) => !schemaKeys.includes(n))).toBe(true);
    expect(pushVariables()).toEqual(PUSH_SETTINGS.filter((s) => !schemaKeys.includes(s.env)).map((s) => s.env));
  });

  it('every setting carries its description as a comment and its default as value (except what init chose)', async () => {
    await runInit({ dir, yes: true }, captureIo().io);
    const text = readFileSync(join(dir, '.env'), 'utf8');
    const env = readEnv(dir);
    const chosen = new Set(['USERNAME_NAMESPACES', 'VAPID_PUBLIC_KEY', 'VAPID_PRIVATE_KEY', 'VAPID_SUBJECT']);
    for (const s of Object.values(CONFIG_SCHEMA)) {
      const firstWords = s.description.split(/\s+/).slice(0, 4).join(' ');
      expect(text, s.env).toContain(`# ${firstWords}`);
      if (!chosen.has(s.env)) expect(env.get(s.env), s.env).toBe(s.default);
    }
    expect(env.get('USERNAME_NAMESPACES')).toBe('default:signed');
  });

  it('the node accepts the generated .env as it is (loadConfig) and the VAPID pair is valid', async () => {
    await runInit({ dir, yes: true, url: 'https://chat.example.com', namespace: 'acme', push: ['webpush', 'apns', 'fcm'] }, captureIo().io);
    const env = Object.fromEntries(readEnv(dir));
    const config = loadConfig(env);
    expect(config.usernameNamespaces.get('acme')).toBe('signed');
    expect(config.trustProxy).not.toBe(false); // behind the TLS proxy the README describes
    expect(vapidProblems(env.VAPID_PUBLIC_KEY ?? '', env.VAPID_PRIVATE_KEY ?? '')).toEqual([]);
    // All three VAPID_* set (the node refuses two of three); the contact defaults to the URL's host.
    expect(env.VAPID_SUBJECT).toBe('mailto:admin@chat.example.com');
    // APNs/FCM: placeholders with instructions, a 0700 secrets folder mounted read-only.
    const text = readFileSync(join(dir, '.env'), 'utf8');
    expect(env.APNS_KEY_FILE).toBe('');
    expect(text).toContain('TODO: download a .p8 auth key');
    expect(text).toContain('TODO: Firebase console');
    expect(mode(join(dir, 'secrets'))).toBe(0o700);
    const compose = readFileSync(join(dir, 'compose.yaml'), 'utf8');
    expect(compose).toContain('./secrets:/app/secrets:ro');
    expect(compose).toContain('"127.0.0.1:${PORT:-8080}:${PORT:-8080}"');
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toContain('https://chat.example.com');
  });

  it('node --env-file and a POSIX shell read the generated .env exactly as the CLI does', async () => {
    await runInit({ dir, yes: true, url: 'https://chat.example.com', push: ['webpush', 'apns', 'fcm'] }, captureIo().io);
    const ours = Object.fromEntries(readEnv(dir));
    const dump = 'process.stdout.write(JSON.stringify(process.env))';
    const clean = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    const viaNode = JSON.parse(execFileSync(process.execPath, ['--env-file=.env', '-e', dump], { cwd: dir, env: clean, encoding: 'utf8' })) as Record<string, string>;
    const viaShell = JSON.parse(execFileSync('sh', ['-c', `set -a; . ./.env; set +a; exec "${process.execPath}" -e '${dump}'`], { cwd: dir, env: clean, encoding: 'utf8' })) as Record<string, string>;
    for (const [k, v] of Object.entries(ours)) {
      expect(viaNode[k], `node --env-file: ${k}`).toBe(v);
      expect(viaShell[k], `sh: ${k}`).toBe(v);
    }
  });

  it('refuses to overwrite (exit 1, nothing written); --force overwrites and keeps 0600', async () => {
    expect((await cli('init', dir, '--yes')).code).toBe(0);
    const before = readFileSync(join(dir, '.env'), 'utf8');
    writeFileSync(join(dir, 'README.md'), 'my notes\n');
    const again = await cli('init', dir, '--yes', '--push', 'none');
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/MW_CLI_WOULD_OVERWRITE: .*already has \.env, compose\.yaml, README\.md, \.gitignore; nothing was written \(use --force/);
    expect(readFileSync(join(dir, '.env'), 'utf8')).toBe(before);
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toBe('my notes\n');

    // One existing file is enough to refuse, and nothing else is created.
    const partial = join(root, 'partial');
    expect((await cli('init', partial, '--yes')).code).toBe(0);
    removeDir(join(partial, 'compose.yaml'));
    expect((await cli('init', partial, '--yes')).code).toBe(1);
    expect(existsSync(join(partial, 'compose.yaml'))).toBe(false);

    const forced = await cli('init', dir, '--yes', '--force');
    expect(forced.code, forced.err).toBe(0);
    expect(forced.out).toMatch(/overwrote {2}\.env/);
    const after = readFileSync(join(dir, '.env'), 'utf8');
    expect(after).not.toBe(before); // fresh VAPID keys
    expect(mode(join(dir, '.env'))).toBe(0o600);
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).not.toBe('my notes\n');
  });

  it('rejects bad values with exit 2 and writes nothing', async () => {
    const bad = await cli('init', dir, '--yes', '--namespace', 'Bad Name!');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/MW_CLI_INVALID_VALUE: --namespace/);
    expect((await cli('init', dir, '--yes', '--push', 'webpush,pager')).code).toBe(2);
    expect((await cli('init', dir, '--yes', '--url', 'ftp://x')).code).toBe(2);
    expect((await cli('init', dir, '--yes', '--contact', 'not a contact')).code).toBe(2);
    const app = await cli('init', dir, '--yes', '--app', 'python');
    expect(app.code).toBe(2);
    expect(app.err).toMatch(/MW_CLI_INVALID_VALUE: --app: unknown skeleton app "python" \(use node, browser, none\)/);
    expect(existsSync(dir)).toBe(false);
  });

  it('a local URL with a port becomes the node\'s PORT (compose publishes it)', async () => {
    await runInit({ dir, yes: true, url: 'http://localhost:9000' }, captureIo().io);
    expect(readEnv(dir).get('PORT')).toBe('9000');
    expect(readFileSync(join(dir, 'compose.yaml'), 'utf8')).toContain('"${PORT:-9000}:${PORT:-9000}"');
    expect(readFileSync(join(dir, 'README.md'), 'utf8')).toContain('meshwhisper doctor http://localhost:9000 --env .env');
  });

  it('--contact sets VAPID_SUBJECT (an e-mail address becomes mailto:); --push none writes no keys', async () => {
    expect((await cli('init', dir, '--yes', '--contact', 'ops@example.net')).code).toBe(0);
    expect(readEnv(dir).get('VAPID_SUBJECT')).toBe('mailto:ops@example.net');
    expect((await cli('init', dir, '--yes', '--force', '--contact', 'https://example.net/contact')).code).toBe(0);
    expect(readEnv(dir).get('VAPID_SUBJECT')).toBe('https://example.net/contact');
    expect((await cli('init', dir, '--yes', '--force', '--push', 'none')).code).toBe(0);
    const env = readEnv(dir);
    expect([env.get('VAPID_PUBLIC_KEY'), env.get('VAPID_PRIVATE_KEY'), env.get('VAPID_SUBJECT')]).toEqual(['', '', '']);
    expect(() => loadConfig(Object.fromEntries(env))).not.toThrow();
  });

  it('asks when stdin is a TTY and --yes is absent', async () => {
    const questions: string[] = [];
    const answers = ['https://chat.example.org', 'team', 'webpush,fcm', 'ops@example.org'];
    const c = captureIo({ stdinIsTTY: true, ask: async (q) => (questions.push(q), answers.shift() ?? '') });
    const r = await runInit({ dir }, c.io);
    expect(questions).toHaveLength(5);
    expect(questions[3]).toContain('[mailto:admin@chat.example.org]');
    expect(questions[4]).toMatch(/Skeleton app .*\(node, browser, none\) \[none\]/); // answered '': no app
    expect(existsSync(join(dir, 'app'))).toBe(false);
    expect(r).toMatchObject({ url: 'https://chat.example.org', namespace: 'team', push: ['webpush', 'fcm'] });
    expect(readEnv(dir).get('USERNAME_NAMESPACES')).toBe('team:signed');
    expect(readEnv(dir).get('VAPID_SUBJECT')).toBe('mailto:ops@example.org');
  });

  it('a node started from the generated settings passes doctor', async () => {
    await runInit({ dir, yes: true }, captureIo().io);
    const env = Object.fromEntries(readEnv(dir));
    // Same settings; only the ports are made free and the data kept in the temp folder.
    const metricsPort = String(await freePort());
    const node = await startNode({ ...env, PORT: '0', DATA_DIR: join(dir, 'data'), LOG_LEVEL: 'silent', METRICS_PORT: metricsPort }, join(dir, 'data'));
    try {
      const text = readFileSync(join(dir, '.env'), 'utf8')
        .replace(/^PORT=.*$/m, `PORT=${node.port}`)
        .replace(/^METRICS_PORT=.*$/m, `METRICS_PORT=${metricsPort}`);
      const envFile = writeEnv(root, {}, 'unused.env');
      writeFileSync(envFile, text);
      const { report } = await doctorJson('--env', envFile, '--data-dir', join(dir, 'data'));
      const bad = report.checks.filter((c) => c.status === 'fail');
      expect(bad).toEqual([]);
      expect(check(report, 'push.webpush').status).toBe('ok');
      expect(check(report, 'websocket').status).toBe('ok');
      expect(check(report, 'metrics').status).toBe('ok');
    } finally {
      await node.close();
    }
  });
});
