// Batched fan-out to several devices in one request — the scenarios of ../link/fan-out-batch.test.js on three instances (PostgreSQL + NATS JetStream) behind a
// round-robin load balancer (see e2e.test.ts in this folder).
import './target.js';
import '../link/fan-out-batch.test.js';
