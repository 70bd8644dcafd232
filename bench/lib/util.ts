/** Small helpers shared by the benchmark harnesses (bench/node, bench/sdk). */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const now = (): number => performance.now();
export const log = (...a: unknown[]): void => console.error(`[${new Date().toISOString().slice(11, 19)}]`, ...a);

/** Polls `pred` every `pollMs` until it holds; throws after `timeoutMs`. */
export async function waitFor(what: string, pred: () => boolean, timeoutMs: number, pollMs = 5): Promise<void> {
  const end = now() + timeoutMs;
  while (!pred()) {
    if (now() > end) throw new Error(`timeout after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}
