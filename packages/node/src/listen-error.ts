/**
 * A listener that cannot bind, said so that the operator knows which one and which setting to
 * change: the node has two (the main HTTP/WebSocket listener and the Prometheus one), and Node's
 * own `listen EADDRINUSE: address already in use 127.0.0.1:9464` names neither.
 */
export const ListenErrorCode = {
  /** A listener could not bind its address (port taken, no permission, no such address). */
  FAILED: 'MW_NODE_LISTEN_FAILED',
} as const;

export type ListenerName = 'main listener' | 'metrics listener';

const SETTINGS: Record<ListenerName, { host: string; port: string; off?: string }> = {
  'main listener': { host: 'HOST', port: 'PORT' },
  'metrics listener': { host: 'METRICS_HOST', port: 'METRICS_PORT', off: 'METRICS_PORT=off' },
};

export class ListenError extends Error {
  override readonly name = 'ListenError';
  readonly code = ListenErrorCode.FAILED;
  constructor(
    readonly listener: ListenerName,
    readonly address: string,
    readonly reason: string | undefined,
  ) {
    super(`${listener} cannot listen on ${address}: ${describe(listener, reason)}`);
  }
}

function describe(listener: ListenerName, reason: string | undefined): string {
  const s = SETTINGS[listener];
  switch (reason) {
    case 'EADDRINUSE':
      return `address already in use (another process holds the port: stop it, or set ${s.port} to a free port${s.off ? `, or ${s.off}` : ''})`;
    case 'EACCES':
      return `permission denied (ports below 1024 need privileges: set ${s.port} to 1024 or above and let the reverse proxy hold 80/443)`;
    case 'EADDRNOTAVAIL':
      return `no interface of this machine has that address (fix ${s.host})`;
    default:
      return `${reason ?? 'unknown error'} (check ${s.host} and ${s.port})`;
  }
}

/** Wraps a failed listen(): `host:port` as the operator configured it ([v6]:port). */
export function listenError(listener: ListenerName, host: string, port: number, e: unknown): ListenError {
  const address = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  return new ListenError(listener, address, (e as NodeJS.ErrnoException | undefined)?.code);
}
