// Load-balancer 502/504 answers retried like network errors — the scenarios of ../client/gateway-retry.test.js, on three instances (PostgreSQL + NATS JetStream)
// behind a round-robin load balancer: each client's requests and sockets go to the instances in turn,
// so senders and recipients sit on different instances. Cases about the single SQLite node itself
// (its files, its restart, a second node) are skipped here (itSingleNode).
import './target.js';
import '../client/gateway-retry.test.js';
