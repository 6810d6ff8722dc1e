import { PREFIX } from './redisKeys.js';

// Where an app built on keyfleet keeps its own data in keyfleet's Redis (kf.redis). The
// nodes' ACL user may touch only `keyfleet:*` keys (redis/entrypoint.sh), and keyfleet's own
// keys never start with `keyfleet:app:`, so an app's keys there cannot collide with the
// ring, the sessions or another app's.

/** Every app key starts with this: `keyfleet:app:`. */
export const APP_KEY_PREFIX = `${PREFIX}app:`;

const APP_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * A Redis key of an app's own: `keyfleet:app:<app>:<part>:<part>…`, e.g.
 * `appKey('notes-api', 'notes', user)` is `keyfleet:app:notes-api:notes:<user>`.
 * `app` is 1 to 64 letters, digits, `_`, `.` or `-` (no `:`, so one app's keys never
 * start with another's); the parts are joined with `:` as they are.
 */
export function appKey(app: string, ...parts: (string | number)[]): string {
  if (!APP_NAME.test(app)) throw new TypeError(`appKey: the app name must be 1 to 64 letters, digits, "_", "." or "-" (got ${JSON.stringify(app)})`);
  return [`${APP_KEY_PREFIX}${app}`, ...parts.map(String)].join(':');
}
