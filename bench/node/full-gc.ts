/**
 * Full garbage collections in the processes of a running node, for memory readings that do not
 * depend on when V8 last collected. SIGUSR1 (Node's own signal; nothing in the node's code) opens a
 * process's inspector, on the loopback port of the node's `--inspect-port` (run.ts picks free ones; a
 * WORKERS primary gives its workers the next ports), read from the "Debugger listening on" line the
 * process prints. The DevTools protocol's `HeapProfiler.collectGarbage` collects. Sessions are kept
 * for later readings; `detach()` closes them and leaves the inspectors listening: closing an
 * inspector from inside the process (`inspector.close()`) crashed Node 20.20 with SIGSEGV in about
 * half of the bench runs that did it.
 */
import WebSocket from 'ws';
import type { NodeProcess } from '../lib/node-process.js';

class Session {
  #id = 0;
  readonly #pending = new Map<number, (r: { error?: { message: string }; result?: { result?: { value?: unknown } } }) => void>();

  constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as { id?: number; error?: { message: string } };
      if (m.id !== undefined) this.#pending.get(m.id)?.(m);
    });
  }

  static async connect(url: string): Promise<Session> {
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new Session(ws);
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = ++this.#id;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, (r) => {
        this.#pending.delete(id);
        if (r.error) reject(new Error(`${method}: ${r.error.message}`));
        else resolve(r.result?.result?.value);
      });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }
}

export class NodeGc {
  readonly #sessions = new Map<number, Session>();
  /** Inspector addresses printed by the node's processes and not yet connected to. */
  readonly #urls: string[] = [];
  readonly #onLine = (line: string): void => {
    const m = /Debugger listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)/.exec(line);
    if (m) this.#urls.push(m[1]!);
  };

  constructor(private readonly node: NodeProcess) {
    node.stderrListeners.add(this.#onLine);
  }

  /** Two full collections (the second frees what finalizers of the first released) in each of these processes, one after the other. */
  async collect(pids: readonly number[]): Promise<void> {
    for (const pid of pids) {
      const s = this.#sessions.get(pid) ?? (await this.#open(pid));
      await s.call('HeapProfiler.collectGarbage');
      await s.call('HeapProfiler.collectGarbage');
    }
  }

  /**
   * The session of `pid`. A WORKERS primary opens its workers' inspectors together with its own,
   * so every printed address is connected to and asked for its process id.
   */
  async #open(pid: number): Promise<Session> {
    let signalled = false;
    const deadline = Date.now() + 10_000;
    for (;;) {
      for (const url of this.#urls.splice(0)) {
        const s = await Session.connect(url);
        this.#sessions.set(Number(await s.call('Runtime.evaluate', { expression: 'process.pid', returnByValue: true })), s);
      }
      const s = this.#sessions.get(pid);
      if (s) return s;
      if (!signalled) {
        process.kill(pid, 'SIGUSR1');
        signalled = true;
      }
      if (Date.now() > deadline) throw new Error(`the inspector of pid ${pid} did not open (is its --inspect-port free?)`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  detach(): void {
    this.node.stderrListeners.delete(this.#onLine);
    for (const s of this.#sessions.values()) s.ws.close();
    this.#sessions.clear();
  }
}
