// Groups end to end — the scenarios of ../client/groups-e2e.test.js on three instances (PostgreSQL + NATS JetStream) behind a
// round-robin load balancer (see e2e.test.ts in this folder).
import './target.js';
import '../client/groups-e2e.test.js';
