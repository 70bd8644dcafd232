/**
 * Secret hygiene for objects that hold key material: `inspect`, `toString` and `JSON.stringify`
 * show the type and public parts only (vodozemac's habit, pinned by test/secret-hygiene.test.ts).
 * Secret bytes live in ES private fields, which neither JSON nor util.inspect can reach.
 */
const inspectSymbol = Symbol.for('nodejs.util.inspect.custom');

export abstract class _Redacted {
  protected abstract describe(): Record<string, unknown>;
  toJSON(): Record<string, unknown> {
    return { type: this.constructor.name, ...this.describe(), secret: '[redacted]' };
  }
  toString(): string {
    return `${this.constructor.name}(${JSON.stringify(this.describe())}, secret: [redacted])`;
  }
  [inspectSymbol](): string {
    return this.toString();
  }
}
