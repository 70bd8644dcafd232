// Why the connection stopped ("replaced": the same device logged in through another instance) and the
// logger hook — the scenarios of ../client/facade.test.js on three instances (PostgreSQL + NATS JetStream) behind a
// round-robin load balancer (see e2e.test.ts in this folder).
import './target.js';
import '../client/facade.test.js';
