// Client processes killed (SIGKILL) mid-conversation, mid-fan-out and mid-link, restarted over the same SQLite file — the scenarios of ../client/crash.test.js, on three instances (PostgreSQL + NATS JetStream)
// behind a round-robin load balancer: each client's requests and sockets go to the instances in turn,
// so senders and recipients sit on different instances. Cases about the single SQLite node itself
// (its files, its restart, a second node) are skipped here (itSingleNode).
import './target.js';
import '../client/crash.test.js';
