// Contacts synchronised between an account's devices — the scenarios of ../link/contact-sync.test.js on three instances (PostgreSQL + NATS JetStream) behind a
// round-robin load balancer (see e2e.test.ts in this folder).
import './target.js';
import '../link/contact-sync.test.js';
