/** Latency histogram: log buckets 1 % wide from 1 µs to ~100 s, so percentiles are within 1 %. */
const GROWTH = 1.01;
const LOG_G = Math.log(GROWTH);
const BUCKETS = Math.ceil(Math.log(1e8) / LOG_G) + 2;

export class Histogram {
  readonly counts = new Uint32Array(BUCKETS);
  n = 0;
  max = 0;

  /** Records one latency in milliseconds. */
  record(ms: number): void {
    const us = Math.max(1, ms * 1000);
    const i = Math.min(BUCKETS - 1, Math.floor(Math.log(us) / LOG_G));
    this.counts[i]!++;
    this.n++;
    if (ms > this.max) this.max = ms;
  }

  /** The q-quantile (0 < q ≤ 1) in milliseconds (upper edge of its bucket), or NaN when empty. */
  quantile(q: number): number {
    if (this.n === 0) return Number.NaN;
    const rank = Math.ceil(q * this.n);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, GROWTH ** (i + 1) / 1000);
    }
    return this.max;
  }
}
