// The scenarios of ../client/delivery-token.test.js on three instances (PostgreSQL + NATS JetStream) behind a
// round-robin load balancer (see e2e.test.ts in this folder).
import './target.js';
import '../client/delivery-token.test.js';
