/** What every route and connection handler needs: built once per node by createNode(). */
import type { CryptoContext } from '@meshwhisper/crypto';
import type { ChallengeIssuer } from './auth.js';
import type { NodeConfig } from './config.js';
import type { DeliveryHub } from './mailbox/hub.js';
import type { SendService } from './mailbox/send.js';
import type { NodeMetrics } from './metrics.js';
import type { NodeKey } from './node-key.js';
import type { RateLimiter } from './rate-limit.js';
import type { NodeStore } from './store/node-store.js';

export interface NodeServices {
  readonly ctx: CryptoContext;
  readonly config: NodeConfig;
  readonly nodeKey: NodeKey;
  readonly store: NodeStore;
  readonly hub: DeliveryHub;
  readonly issuer: ChallengeIssuer;
  readonly limiter: RateLimiter;
  readonly sender: SendService;
  readonly metrics: NodeMetrics | undefined;
  /** Directories for blob files. */
  readonly mediaDir: string;
  readonly archiveDir: string;
  readonly tmpDir: string;
  /** True once shutdown has begun (/ready answers 503, new work is refused). */
  readonly shuttingDown: () => boolean;
}
