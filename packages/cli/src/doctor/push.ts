/**
 * Offline sanity of push credentials (no request to Apple, Google or a push service): formats,
 * that the VAPID public key belongs to the private key, that the APNs .p8 key is a P-256 key,
 * that the FCM service-account JSON has what the OAuth JWT grant needs. Never prints a secret.
 */
import { createPrivateKey } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import type { NodeEnv } from '../node-env.js';
import { PUSH_SETTINGS } from '../push-settings.js';
import type { PushService } from '../push-settings.js';
import { vapidProblems } from '../vapid.js';
import type { CheckResult } from './report.js';

function configured(env: NodeEnv, service: PushService): { set: string[]; missing: string[] } {
  // Only the credentials (empty by default) switch a service on, as in the node.
  const names = PUSH_SETTINGS.filter((s) => s.service === service && s.default === '').map((s) => s.env);
  const set = names.filter((n) => (env.get(n) ?? '') !== '');
  return { set, missing: names.filter((n) => !set.includes(n)) };
}

async function secretFile(env: NodeEnv, name: string): Promise<{ path: string; text: string; problems: string[]; warnings: string[] } | { path: string; error: string }> {
  const path = env.path(env.value(name));
  let mode: number;
  try {
    mode = (await stat(path)).mode;
  } catch (e) {
    return { path, error: `${name}: ${path} ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'cannot be read'}` };
  }
  const warnings = (mode & 0o077) !== 0 ? [`${path} is readable by group/others (mode ${(mode & 0o777).toString(8)})`] : [];
  try {
    return { path, text: await readFile(path, 'utf8'), problems: [], warnings };
  } catch {
    return { path, error: `${name}: ${path} cannot be read` };
  }
}

function result(id: string, problems: string[], warnings: string[], okMessage: string, fix: string, warnFix: string): CheckResult {
  if (problems.length > 0) return { id, status: 'fail', message: problems.join('; '), fix };
  if (warnings.length > 0) return { id, status: 'warn', message: warnings.join('; '), fix: warnFix };
  return { id, status: 'ok', message: okMessage };
}

export async function checkWebPush(env: NodeEnv): Promise<CheckResult> {
  const id = 'push.webpush';
  const { set, missing } = configured(env, 'webpush');
  if (set.length === 0) return { id, status: 'skip', message: 'Web Push not configured (VAPID_* empty)' };
  const keyProblems: string[] = [];
  const pub = env.get('VAPID_PUBLIC_KEY') ?? '';
  const priv = env.get('VAPID_PRIVATE_KEY') ?? '';
  if (pub === '' || priv === '') keyProblems.push(`${pub === '' ? 'VAPID_PUBLIC_KEY' : 'VAPID_PRIVATE_KEY'} is empty`);
  else keyProblems.push(...vapidProblems(pub, priv));
  const subject = env.get('VAPID_SUBJECT') ?? '';
  const subjectProblem =
    subject === '' ? 'VAPID_SUBJECT is empty (push services require a contact)' : /^(mailto:[^@\s]+@[^@\s]+|https:\/\/\S+)$/.test(subject) ? undefined : 'VAPID_SUBJECT must be a mailto: address or an https: URL (RFC 8292 §2.1)';
  const problems = [...keyProblems, ...(subjectProblem ? [subjectProblem] : [])];
  if (problems.length === 0) return { id, status: 'ok', message: `VAPID key pair valid and matching; subject ${subject}` };
  const fix =
    keyProblems.length > 0
      ? "generate a fresh pair with `meshwhisper keys vapid`, replace both VAPID_*_KEY lines in the node's .env and restart the node (browsers must re-subscribe after a key change)"
      : 'set VAPID_SUBJECT=mailto:you@example.com (or your https: site) in the .env and restart the node';
  return { id, status: 'fail', message: `${missing.length > 0 ? `set ${set.join(', ')} but not ${missing.join(', ')}: ` : ''}${problems.join('; ')}`, fix };
}

export async function checkApns(env: NodeEnv): Promise<CheckResult> {
  const id = 'push.apns';
  const { set, missing } = configured(env, 'apns');
  if (set.length === 0) return { id, status: 'skip', message: 'APNs not configured (APNS_* empty)' };
  const problems = missing.length > 0 ? [`set ${set.join(', ')} but not ${missing.join(', ')}`] : [];
  const warnings: string[] = [];
  if (env.get('APNS_KEY_FILE')) {
    const f = await secretFile(env, 'APNS_KEY_FILE');
    if ('error' in f) problems.push(f.error);
    else {
      warnings.push(...f.warnings);
      try {
        const key = createPrivateKey(f.text);
        if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') problems.push(`APNS_KEY_FILE is a ${key.asymmetricKeyType ?? 'unknown'} key, APNs token auth needs an EC P-256 key (.p8)`);
      } catch {
        problems.push('APNS_KEY_FILE is not a PEM private key (expected the .p8 file as downloaded: -----BEGIN PRIVATE KEY-----)');
      }
    }
  }
  const keyId = env.get('APNS_KEY_ID') ?? '';
  if (keyId !== '' && !/^[A-Z0-9]{10}$/.test(keyId)) problems.push('APNS_KEY_ID must be the 10-character key id (A–Z, 0–9)');
  const team = env.get('APNS_TEAM_ID') ?? '';
  if (team !== '' && !/^[A-Z0-9]{10}$/.test(team)) problems.push('APNS_TEAM_ID must be the 10-character team id (A–Z, 0–9)');
  const topic = env.get('APNS_BUNDLE_ID') ?? '';
  if (topic !== '' && !/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/.test(topic)) problems.push('APNS_BUNDLE_ID must be the app bundle id, e.g. com.example.chat');
  const api = env.value('APNS_URL');
  const mode = api === '' ? 'production' : /sandbox/.test(api) ? 'sandbox' : api === 'https://api.push.apple.com' ? 'production' : api;
  return result(
    id,
    problems,
    warnings,
    `.p8 key parses as P-256; key id ${keyId}, team ${team}, bundle ${topic}, ${mode}`,
    'download the .p8 key once from developer.apple.com (Keys), copy it unchanged to the path in APNS_KEY_FILE, and copy Key ID and Team ID from the same page',
    'chmod 600 the key file',
  );
}

export async function checkFcm(env: NodeEnv): Promise<CheckResult> {
  const id = 'push.fcm';
  const { set } = configured(env, 'fcm');
  if (set.length === 0) return { id, status: 'skip', message: 'FCM not configured (FCM_SERVICE_ACCOUNT_FILE empty)' };
  const problems: string[] = [];
  const warnings: string[] = [];
  let project = '';
  const f = await secretFile(env, 'FCM_SERVICE_ACCOUNT_FILE');
  if ('error' in f) problems.push(f.error);
  else {
    warnings.push(...f.warnings);
    let json: Record<string, unknown> | undefined;
    try {
      const parsed: unknown = JSON.parse(f.text);
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) json = parsed as Record<string, unknown>;
      else problems.push('FCM service-account file is not a JSON object');
    } catch {
      problems.push('FCM service-account file is not valid JSON');
    }
    if (json) {
      if (json.type !== 'service_account') problems.push(`"type" is ${JSON.stringify(json.type)}, expected "service_account" (is this a google-services.json client config instead?)`);
      for (const field of ['project_id', 'client_email', 'private_key']) if (typeof json[field] !== 'string' || json[field] === '') problems.push(`"${field}" is missing`);
      if (typeof json.private_key === 'string' && json.private_key !== '') {
        try {
          const key = createPrivateKey(json.private_key);
          if (key.asymmetricKeyType !== 'rsa') problems.push(`"private_key" is a ${key.asymmetricKeyType ?? 'unknown'} key, the OAuth grant signs with RS256 (RSA)`);
        } catch {
          problems.push('"private_key" is not a PEM private key');
        }
      }
      if (json.token_uri !== undefined && (typeof json.token_uri !== 'string' || !json.token_uri.startsWith('https://'))) problems.push('"token_uri" must be an https URL');
      project = typeof json.project_id === 'string' ? json.project_id : '';
    }
  }
  return result(
    id,
    problems,
    warnings,
    `service account for project ${project} parses (RSA key, client_email, project_id)`,
    'download a new key in the Firebase console (Project settings → Service accounts → Generate new private key) and point FCM_SERVICE_ACCOUNT_FILE at it',
    'chmod 600 the service-account file',
  );
}
