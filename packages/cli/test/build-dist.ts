// The CLI's tests run built binaries (`meshwhisper`, `meshwhisper-node`) and the built SDK, so they
// build with the same one-at-a-time lock as the node's tests (see packages/node/test/build-dist.ts).
export { buildDist, repoRoot } from '../../node/test/build-dist.js';
