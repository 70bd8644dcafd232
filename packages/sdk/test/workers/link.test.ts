// Device linking (the link channel's requests land on both workers: rpc through the primary), history hand-over, own-device sync — the scenarios of ../link/link.test.js against the built node with WORKERS=2 (a primary and
// two worker processes on one SQLite file): connections go to the workers in turn, so senders and
// recipients sit on different workers. Cases about the in-process node itself are skipped (itSingleNode).
import './target.js';
import '../link/link.test.js';
