import type { UserDirectory } from '../../../app/src/auth/users.js';
import type { LoginThrottle } from '../../../app/src/auth/throttle.js';
import { demoApp } from '../../../app/src/demo/app.js';
import { createKit, type KitDeps } from '../../../app/src/http/kit.js';

// keyfleet's demo app over stand-in dependencies (a ring held in memory, a fake session
// store), assembled as server.ts assembles it over a real node: the kit's request side
// (http/kit.ts) and the demo routes (demo/), in process, without Redis.

/** What most request-side tests share: one node, the default lifetimes, no proxy in front. */
export const KIT_DEFAULTS = {
  nodeId: 'node-1',
  tokenTtlMs: 15 * 60_000,
  sessionTtlMs: 8 * 3_600_000,
  clockSkewMs: 30_000,
  trustProxy: false,
} as const;

export interface AppDeps extends KitDeps {
  /** The accounts POST /login accepts (USERS); also who still exists, unless userExists says. */
  users: UserDirectory;
  /** Failed-login counters; absent: no throttling. */
  throttle?: LoginThrottle;
}

export function createApp({ users, throttle, ...deps }: AppDeps) {
  const kit = createKit({ userExists: (user) => users.has(user), ...deps });
  return demoApp(kit, { users, ...(throttle ? { throttle } : {}), dashboard: (deps.dashboard?.mode ?? 'off') !== 'off', trustProxy: deps.trustProxy });
}
