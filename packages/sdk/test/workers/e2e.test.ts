// Direct messages, offline mail, usernames, receipts and message states, identity, replies/reactions/edits, typing and presence, blocking — the scenarios of ../client/e2e.test.js against the built node with WORKERS=2 (a primary and
// two worker processes on one SQLite file): connections go to the workers in turn, so senders and
// recipients sit on different workers. Cases about the in-process node itself are skipped (itSingleNode).
import './target.js';
import '../client/e2e.test.js';
