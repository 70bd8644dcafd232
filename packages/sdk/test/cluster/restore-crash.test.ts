// An account restore interrupted by a crash — the scenarios of ../archive/restore-crash.test.js, on three instances (PostgreSQL + NATS JetStream)
// behind a round-robin load balancer: each client's requests and sockets go to the instances in turn,
// so senders and recipients sit on different instances. Cases about the single SQLite node itself
// (its files, its restart, a second node) are skipped here (itSingleNode).
import './target.js';
import '../archive/restore-crash.test.js';
