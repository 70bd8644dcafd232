// Encrypted account archive: backup, restore, concurrent devices — the scenarios of ../archive/archive.test.js on three instances (PostgreSQL + NATS JetStream) behind a
// round-robin load balancer (see e2e.test.ts in this folder).
import './target.js';
import '../archive/archive.test.js';
