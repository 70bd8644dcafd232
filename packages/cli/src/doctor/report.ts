/** A doctor report: one result per check, rendered as text or JSON. */

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  /** Stable identifier (dns, connect, tls, health, ready, clock, websocket, metrics, postgres, nats (STORE=postgres), push.webpush, push.apns, push.fcm, data-dir, disk, backups). */
  readonly id: string;
  readonly status: CheckStatus;
  /** One line: what was found. Never contains a secret. */
  readonly message: string;
  /** One line: how to fix it (WARN and FAIL). */
  readonly fix?: string;
  readonly durationMs?: number;
}

export interface DoctorReport {
  readonly target: string;
  readonly envFile: string | null;
  readonly dataDir: string | null;
  readonly checks: readonly CheckResult[];
  readonly summary: { readonly ok: number; readonly warn: number; readonly fail: number; readonly skip: number };
  /** False when any check failed (exit code 1). */
  readonly healthy: boolean;
}

export function summarize(target: string, envFile: string | undefined, dataDir: string | undefined, checks: readonly CheckResult[]): DoctorReport {
  const count = (s: CheckStatus): number => checks.filter((c) => c.status === s).length;
  const summary = { ok: count('ok'), warn: count('warn'), fail: count('fail'), skip: count('skip') };
  return { target, envFile: envFile ?? null, dataDir: dataDir ?? null, checks, summary, healthy: summary.fail === 0 };
}

const LABEL: Record<CheckStatus, string> = { ok: 'OK  ', warn: 'WARN', fail: 'FAIL', skip: 'SKIP' };

export function renderText(report: DoctorReport): string[] {
  const width = Math.max(...report.checks.map((c) => c.id.length), 8);
  const lines = [`meshwhisper doctor: ${report.target}${report.envFile ? ` (settings from ${report.envFile})` : ''}`];
  for (const c of report.checks) {
    lines.push(`  ${LABEL[c.status]}  ${c.id.padEnd(width)}  ${c.message}`);
    if (c.fix && (c.status === 'warn' || c.status === 'fail')) lines.push(`  ${' '.repeat(4)}  ${' '.repeat(width)}  fix: ${c.fix}`);
  }
  const s = report.summary;
  lines.push(`${s.fail} FAIL, ${s.warn} WARN, ${s.ok} OK${s.skip ? `, ${s.skip} skipped` : ''}`);
  return lines;
}
