#!/usr/bin/env node
// Prints the plain closing line CI reads ("N passed, N failed[, N skipped]") from vitest's JSON
// report, which vitest.config.ts writes on every run.
import { existsSync, readFileSync } from 'node:fs';

const file = process.argv[2] ?? '.vitest-results.json';
if (!existsSync(file)) {
  console.log('tests did not run (lint or type-check failed first, or vitest crashed)');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
const r = JSON.parse(readFileSync(file, 'utf8'));
const passed = r.numPassedTests ?? 0;
// A test file that fails to load has no test cases; count each such file as one failure.
const brokenFiles = (r.testResults ?? []).filter((t) => t.status === 'failed' && (t.assertionResults ?? []).length === 0).length;
const failed = (r.numFailedTests ?? 0) + brokenFiles;
const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(r.success !== false && failed === 0 ? 0 : 1);
