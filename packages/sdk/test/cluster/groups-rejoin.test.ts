// Groups after an account restore: rejoin, and the old device refused — the scenarios of ../archive/groups-rejoin.test.js, on three instances (PostgreSQL + NATS JetStream)
// behind a round-robin load balancer: each client's requests and sockets go to the instances in turn,
// so senders and recipients sit on different instances. Cases about the single SQLite node itself
// (its files, its restart, a second node) are skipped here (itSingleNode).
import './target.js';
import '../archive/groups-rejoin.test.js';
