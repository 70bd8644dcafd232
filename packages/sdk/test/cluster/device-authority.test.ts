// Device lists (senders verify them, recipients enforce them, a withholding node is detected) — the
// scenarios of ../client/device-authority.test.js, on three instances (PostgreSQL + NATS JetStream)
// behind a round-robin load balancer; the malicious-operator edits go to the shared PostgreSQL store.
import './target.js';
import '../client/device-authority.test.js';
