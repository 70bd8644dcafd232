// A first end-to-end encrypted message: two devices in one process, against the node at
// MESHWHISPER_NODE_URL (default http://localhost:8080). Run from the clone: node examples/first-message.mjs
import { randomBytes } from 'node:crypto';
import { MeshWhisper, memoryStorage } from '@meshwhisper/sdk';

const node = process.env.MESHWHISPER_NODE_URL ?? 'http://localhost:8080';
// Both devices live in memory: no key file is written, and every run starts afresh.
const alice = await MeshWhisper.create({ node, namespace: 'default', storage: await memoryStorage() });
const bob = await MeshWhisper.create({ node, namespace: 'default', storage: await memoryStorage() });
// A new name each run: in a signed namespace a username stays with the key that claimed it.
const username = `bob-${randomBytes(4).toString('hex')}`;
await bob.claimUsername(username);                                 // signed by bob's account key
console.log(`bob claimed the username ${username}`);
const arrived = bob.once('message', undefined, 30_000);
await alice.sendText({ username }, 'hello, post-quantum world');   // PQXDH + Double Ratchet + sealed sender
console.log(`alice sent a message to ${username}: the node stored it sealed`);
const m = await arrived;                                           // m.request: alice is not a contact yet
console.log(`bob received "${m.text}" from a new contact (request: ${m.request === true})`);
await bob.acceptContact(m.sender.accountKey);
console.log('bob accepted alice as a contact');
await Promise.all([alice.close(), bob.close()]);
