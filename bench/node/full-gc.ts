/**
 * A full garbage collection in other Node processes, for memory readings that do not depend on
 * when V8 last collected: SIGUSR1 opens a process's inspector on 127.0.0.1:<port> (Node's own
 * signal; nothing in the node's code), the DevTools protocol's `HeapProfiler.collectGarbage`
 * collects, and `close()` shuts the inspector again (so that the next process can take the port).
 * `fullGc(pids)` does that for each process in turn (a WORKERS node is a primary and its workers);
 * call it before each of the readings that are compared, so that both carry the inspector's
 * leftovers alike.
 */
import WebSocket from 'ws';
import { sleep } from '../lib/util.js';

export class RemoteGc {
  #id = 0;
  readonly #pending = new Map<number, (r: { error?: { message: string } }) => void>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (d) => {
      const m = JSON.parse(String(d)) as { id?: number; error?: { message: string } };
      if (m.id !== undefined) this.#pending.get(m.id)?.(m);
    });
  }

  static async attach(pid: number, port = 9229): Promise<RemoteGc> {
    process.kill(pid, 'SIGUSR1');
    let url: string | undefined;
    for (let i = 0; i < 100 && url === undefined; i++) {
      await sleep(100);
      try {
        const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
        url = list[0]?.webSocketDebuggerUrl;
      } catch {
        /* not listening yet */
      }
    }
    if (url === undefined) throw new Error(`the inspector of pid ${pid} did not open on 127.0.0.1:${port}`);
    const ws = new WebSocket(url);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new RemoteGc(ws);
  }

  #call(method: string, params: Record<string, unknown> = {}): Promise<void> {
    const id = ++this.#id;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, (r) => {
        this.#pending.delete(id);
        if (r.error) reject(new Error(`${method}: ${r.error.message}`));
        else resolve();
      });
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Two full collections (the second frees what finalizers of the first released). */
  async collect(): Promise<void> {
    await this.#call('HeapProfiler.collectGarbage');
    await this.#call('HeapProfiler.collectGarbage');
  }

  async close(): Promise<void> {
    // Node 20.16+: process.getBuiltinModule works from an inspector expression in an ES module app.
    await this.#call('Runtime.evaluate', { expression: "setImmediate(() => process.getBuiltinModule('node:inspector').close())" }).catch(() => undefined);
    this.ws.close();
  }
}

/** A full GC in each of these Node processes, one after the other. */
export async function fullGc(pids: readonly number[]): Promise<void> {
  for (const pid of pids) {
    const gc = await RemoteGc.attach(pid);
    try {
      await gc.collect();
    } finally {
      await gc.close();
    }
    // The inspector closes on the node's next turn: wait until the port is free for the next one.
    for (let i = 0; i < 50; i++) {
      const open = await fetch('http://127.0.0.1:9229/json/version').then(() => true, () => false);
      if (!open) break;
      await sleep(100);
    }
  }
}
