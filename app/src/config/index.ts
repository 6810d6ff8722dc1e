import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { z } from 'zod';
import { ConfigError } from '../lib/errors.js';
import { redisTargetFromEnv, type RedisTarget } from '../lib/redis.js';
import { parseDuration } from '../lib/duration.js';
import { parsePasswordHash, type PasswordHash } from '../auth/password.js';
import type { ThrottleOptions } from '../auth/throttle.js';
import { NODE_ROLES, type NodeRole } from '../cluster/role.js';

// The environment, read once at start-up. It fills option types that auth and cluster define
// themselves; none of keyring, cluster, auth or metrics imports config
// (test/unit/structure/importGraph.test.ts).
export { NODE_ROLES, type NodeRole } from '../cluster/role.js';

/** Who may see /dashboard: nobody (404), anyone, holders of DASHBOARD_TOKEN, or anyone logged in. */
export const DASHBOARD_MODES = ['off', 'public', 'token', 'login'] as const;
export type DashboardMode = (typeof DASHBOARD_MODES)[number];
/**
 * Where keys come from. `shared`: the key ring in Redis (what keyfleet is for). The other
 * two exist to be measured against: `local` is the broken web farm (each node generates its
 * own keys at start-up), `static` the copy-one-secret-everywhere practice (keys derived
 * from STATIC_SECRET, never rotated).
 */
export type KeyringMode = 'shared' | 'local' | 'static';

export interface Config {
  redis: RedisTarget;
  /** Replicas that must hold a staged key before it is activated (Redis WAIT); 0: none. */
  redisMinReplicas: number;
  keyringMode: KeyringMode;
  staticSecret?: string;
  masterKey: Buffer;
  nodeRole: NodeRole;
  nodeId: string;
  keyRotationIntervalMs: number;
  tokenTtlMs: number;
  sessionTtlMs: number;
  port: number;
  users: Map<string, PasswordHash>;
  leaseTtlMs: number;
  heartbeatIntervalMs: number;
  ringReloadIntervalMs: number;
  rotationConfirmTimeoutMs: number;
  clockSkewMs: number;
  shutdownDrainMs: number;
  trustProxy: string | boolean;
  loginThrottle: ThrottleOptions;
  logLevel: string;
  dashboard: DashboardMode;
  dashboardToken?: string;
  /** The accounts DASHBOARD=login admits (DASHBOARD_USERS); nobody else. */
  dashboardUsers: ReadonlySet<string>;
  /** Origins a state-changing browser request may come from; empty: the request's own. */
  publicOrigins: string[];
  /** `__Host-auth` and `__Host-sid` instead of `auth` and `sid` (COOKIE_HOST_PREFIX). */
  cookieHostPrefix: boolean;
  /** GET /metrics (Prometheus) on a listener of its own; 0: none. */
  metricsPort: number;
  /** How long the next signing key is published in the JWKS before a routine rotation may use it. */
  jwksPrepublishMs: number;
  /** The `iss` of every token and the discovery document's issuer (PUBLIC_ISSUER; default `keyfleet`). */
  publicIssuer?: string;
  /** Resource servers a client may ask a token for (`aud`), besides keyfleet itself. */
  audiences: string[];
  /** The `auth` cookie: renewed past half of idleMs, never past absoluteMs after the login. */
  authCookie: { idleMs: number; absoluteMs: number };
  /** Refresh-token families: idle and absolute lifetimes, and the reuse grace window (at most 30 s). */
  refresh: { idleMs: number; absoluteMs: number; graceMs: number };
}

const duration = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      const value = parseDuration(text);
      if (value === undefined) {
        ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration (use e.g. 30s, 15m, 8h, 1d)` });
        return z.NEVER;
      }
      return value;
    });

const masterKey = z.string().transform((text, ctx) => {
  const bytes = Buffer.from(text.trim(), 'base64');
  if (bytes.length !== 32 || bytes.toString('base64') !== text.trim()) {
    ctx.addIssue({ code: 'custom', message: 'must be exactly 32 bytes, base64-encoded (openssl rand -base64 32)' });
    return z.NEVER;
  }
  return bytes;
});

const users = z
  .string()
  .default('')
  .transform((text, ctx) => {
    const result = new Map<string, PasswordHash>();
    for (const entry of text.split(',').map((part) => part.trim()).filter(Boolean)) {
      const eq = entry.indexOf('=');
      const hash = eq > 0 ? parsePasswordHash(entry.slice(eq + 1)) : undefined;
      if (!hash) {
        ctx.addIssue({ code: 'custom', message: 'entries must be name=scrypt.N.r.p.salt.hash (npx keyfleet hash-password)' });
        return z.NEVER;
      }
      result.set(entry.slice(0, eq), hash);
    }
    return result;
  });

const schema = z.object({
  REDIS_MIN_REPLICAS: z.coerce.number().int().min(0).max(16).default(0),
  KEYRING_MASTER_KEY: masterKey,
  KEYRING_MODE: z.enum(['shared', 'local', 'static']).default('shared'),
  STATIC_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  NODE_ROLE: z.enum(NODE_ROLES).default('auto'),
  NODE_ID: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 letters, digits, dot, dash or underscore')
    .default(hostname()),
  KEY_ROTATION_INTERVAL: duration('24h'),
  TOKEN_TTL: duration('15m'),
  SESSION_TTL: duration('8h'),
  PORT: z.coerce.number().int().min(1).max(65535).default(3000),
  USERS: users,
  LEASE_TTL: duration('10s'),
  HEARTBEAT_INTERVAL: duration('1s'),
  RING_RELOAD_INTERVAL: duration('5s'),
  ROTATION_CONFIRM_TIMEOUT: duration('30s'),
  CLOCK_SKEW: duration('30s'),
  SHUTDOWN_DRAIN: duration('3s'),
  LOGIN_MAX_FAILURES_PER_ACCOUNT: z.coerce.number().int().min(1).default(5),
  LOGIN_MAX_FAILURES_PER_ADDRESS: z.coerce.number().int().min(1).default(50),
  LOGIN_FAILURE_WINDOW: duration('15m'),
  TRUST_PROXY: z.string().default('loopback, linklocal, uniquelocal'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DASHBOARD: z.enum(DASHBOARD_MODES).default('off'),
  DASHBOARD_TOKEN: z.string().min(32, 'must be at least 32 characters (openssl rand -base64 32)').optional(),
  LOGIN_SLOWDOWN: duration('1s'),
  LOGIN_SLOWDOWN_MAX: duration('1m'),
  LOGIN_PENDING_TTL: duration('10s'),
  DASHBOARD_USERS: z.string().default('').transform((text) => new Set(text.split(',').map((name) => name.trim()).filter(Boolean))),
  PUBLIC_ORIGINS: z
    .string()
    .default('')
    .transform((text, ctx) => {
      const origins: string[] = [];
      for (const entry of text.split(',').map((part) => part.trim().replace(/\/$/, '')).filter(Boolean)) {
        let origin: string | undefined;
        try {
          origin = new URL(entry).origin;
        } catch {
          origin = undefined;
        }
        if (!origin || !/^https?:/.test(origin) || origin !== entry.toLowerCase()) {
          ctx.addIssue({ code: 'custom', message: `"${entry}" is not an origin (scheme://host[:port], e.g. https://keyfleet.example.com)` });
          return z.NEVER;
        }
        origins.push(origin);
      }
      return origins;
    }),
  COOKIE_HOST_PREFIX: z.enum(['true', 'false']).default('false'),
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).default(9464),
  JWKS_PREPUBLISH: durationOrZero('30m'),
  PUBLIC_ISSUER: publicIssuer().optional(),
  AUDIENCES: audienceList(),
  AUTH_IDLE_TIMEOUT: duration('1h'),
  // Absent: SESSION_TTL (the cookie's lifetime before it slid).
  AUTH_ABSOLUTE_LIFETIME: z.string().optional().transform((text, ctx) => {
    if (text === undefined) return undefined;
    const value = parseDuration(text);
    if (value === undefined) {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration (use e.g. 30s, 15m, 8h, 1d)` });
      return z.NEVER;
    }
    return value;
  }),
  REFRESH_IDLE_TIMEOUT: duration('14d'),
  REFRESH_ABSOLUTE_LIFETIME: duration('30d'),
  REFRESH_REUSE_GRACE: duration('10s'),
});

type Env = Record<string, string | undefined>;

/**
 * Reads the node's configuration once, at start-up. Every problem is reported together,
 * each naming its variable; the caller prints them and exits 1.
 */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  let masterKeyReported = false;
  const input: Env = { ...env };
  // Empty strings mean "unset", as they do for most twelve-factor apps.
  for (const [key, value] of Object.entries(input)) if (value === '') delete input[key];

  if (input.KEYRING_MASTER_KEY && input.KEYRING_MASTER_KEY_FILE) {
    problems.push('KEYRING_MASTER_KEY and KEYRING_MASTER_KEY_FILE: set one, not both');
    masterKeyReported = true;
  } else if (input.KEYRING_MASTER_KEY_FILE) {
    try {
      input.KEYRING_MASTER_KEY = readFileSync(input.KEYRING_MASTER_KEY_FILE, 'utf8').trim();
    } catch (error) {
      problems.push(`KEYRING_MASTER_KEY_FILE: cannot read ${input.KEYRING_MASTER_KEY_FILE} (${(error as NodeJS.ErrnoException).code})`);
      masterKeyReported = true;
    }
  } else if (!input.KEYRING_MASTER_KEY && (input.KEYRING_MODE ?? 'shared') !== 'shared') {
    // No ring in Redis to encrypt: a per-process key keeps the in-memory ring uniform.
    input.KEYRING_MASTER_KEY = randomBytes(32).toString('base64');
  } else if (!input.KEYRING_MASTER_KEY) {
    problems.push('KEYRING_MASTER_KEY or KEYRING_MASTER_KEY_FILE: one is required (32 bytes, base64)');
    masterKeyReported = true;
  }

  const redis = redisTargetFromEnv(input);
  problems.push(...redis.problems);

  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0] ?? 'environment');
      if (name === 'KEYRING_MASTER_KEY' && masterKeyReported) continue;
      const label = name === 'KEYRING_MASTER_KEY' && input.KEYRING_MASTER_KEY_FILE ? 'KEYRING_MASTER_KEY_FILE' : name;
      problems.push(`${label}: ${issue.message}`);
    }
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);

  const c = parsed.data;
  if (c.KEYRING_MODE === 'static' && !c.STATIC_SECRET) {
    throw new ConfigError(['STATIC_SECRET: is required with KEYRING_MODE=static']);
  }
  if (c.DASHBOARD === 'token' && !c.DASHBOARD_TOKEN) {
    throw new ConfigError(['DASHBOARD_TOKEN: is required with DASHBOARD=token']);
  }
  if (c.DASHBOARD === 'login' && c.DASHBOARD_USERS.size === 0) {
    throw new ConfigError(['DASHBOARD_USERS: is required with DASHBOARD=login (the accounts in USERS that may see it, comma-separated)']);
  }
  const unknownOperators = [...c.DASHBOARD_USERS].filter((name) => !c.USERS.has(name));
  if (unknownOperators.length > 0) {
    throw new ConfigError([`DASHBOARD_USERS: ${unknownOperators.join(', ')} not in USERS`]);
  }
  if (c.LOGIN_PENDING_TTL < 1) {
    throw new ConfigError(['LOGIN_PENDING_TTL: must be above 0 (how long a login in progress counts against the limits)']);
  }
  if (c.LOGIN_SLOWDOWN < 1 || c.LOGIN_SLOWDOWN_MAX < c.LOGIN_SLOWDOWN) {
    throw new ConfigError(['LOGIN_SLOWDOWN, LOGIN_SLOWDOWN_MAX: the slow-down must be above 0 and its maximum at least as long']);
  }
  if (c.METRICS_PORT !== 0 && c.METRICS_PORT === c.PORT) {
    throw new ConfigError(['METRICS_PORT: must differ from PORT (the balancer forwards PORT; /metrics stays off it)']);
  }
  const authAbsoluteMs = c.AUTH_ABSOLUTE_LIFETIME ?? c.SESSION_TTL;
  // Unset, the idle timeout is 1h or the absolute lifetime if shorter: a SESSION_TTL under an
  // hour that started fine before the cookie slid must still start. Set, it must fit.
  const authIdleMs = input.AUTH_IDLE_TIMEOUT === undefined ? Math.min(c.AUTH_IDLE_TIMEOUT, authAbsoluteMs) : c.AUTH_IDLE_TIMEOUT;
  if (authIdleMs > authAbsoluteMs) {
    throw new ConfigError(['AUTH_IDLE_TIMEOUT: must not be longer than AUTH_ABSOLUTE_LIFETIME (default SESSION_TTL)']);
  }
  if (c.REFRESH_REUSE_GRACE > 30_000) {
    throw new ConfigError(['REFRESH_REUSE_GRACE: at most 30s (a redeemed refresh token presented later than that revokes its family)']);
  }
  if (c.REFRESH_IDLE_TIMEOUT > c.REFRESH_ABSOLUTE_LIFETIME) {
    throw new ConfigError(['REFRESH_IDLE_TIMEOUT: must not be longer than REFRESH_ABSOLUTE_LIFETIME']);
  }
  if (c.LEASE_TTL < 3 * c.HEARTBEAT_INTERVAL) {
    throw new ConfigError(['LEASE_TTL: must be at least three HEARTBEAT_INTERVALs']);
  }
  return {
    redis: redis.target!,
    redisMinReplicas: c.REDIS_MIN_REPLICAS,
    keyringMode: c.KEYRING_MODE,
    ...(c.STATIC_SECRET ? { staticSecret: c.STATIC_SECRET } : {}),
    masterKey: c.KEYRING_MASTER_KEY,
    nodeRole: c.NODE_ROLE,
    nodeId: c.NODE_ID,
    keyRotationIntervalMs: c.KEY_ROTATION_INTERVAL,
    tokenTtlMs: c.TOKEN_TTL,
    sessionTtlMs: c.SESSION_TTL,
    port: c.PORT,
    users: c.USERS,
    leaseTtlMs: c.LEASE_TTL,
    heartbeatIntervalMs: c.HEARTBEAT_INTERVAL,
    ringReloadIntervalMs: c.RING_RELOAD_INTERVAL,
    rotationConfirmTimeoutMs: c.ROTATION_CONFIRM_TIMEOUT,
    clockSkewMs: c.CLOCK_SKEW,
    shutdownDrainMs: c.SHUTDOWN_DRAIN,
    loginThrottle: {
      maxFailuresPerAccount: c.LOGIN_MAX_FAILURES_PER_ACCOUNT,
      maxFailuresPerAddress: c.LOGIN_MAX_FAILURES_PER_ADDRESS,
      windowMs: c.LOGIN_FAILURE_WINDOW,
      slowdownBaseMs: c.LOGIN_SLOWDOWN,
      slowdownMaxMs: c.LOGIN_SLOWDOWN_MAX,
      pendingMs: c.LOGIN_PENDING_TTL,
    },
    trustProxy: c.TRUST_PROXY === 'true' ? true : c.TRUST_PROXY === 'false' ? false : c.TRUST_PROXY,
    logLevel: c.LOG_LEVEL,
    dashboard: c.DASHBOARD,
    ...(c.DASHBOARD_TOKEN ? { dashboardToken: c.DASHBOARD_TOKEN } : {}),
    dashboardUsers: c.DASHBOARD_USERS,
    publicOrigins: c.PUBLIC_ORIGINS,
    cookieHostPrefix: c.COOKIE_HOST_PREFIX === 'true',
    metricsPort: c.METRICS_PORT,
    jwksPrepublishMs: c.JWKS_PREPUBLISH,
    ...(c.PUBLIC_ISSUER ? { publicIssuer: c.PUBLIC_ISSUER } : {}),
    audiences: c.AUDIENCES,
    authCookie: { idleMs: authIdleMs, absoluteMs: authAbsoluteMs },
    refresh: { idleMs: c.REFRESH_IDLE_TIMEOUT, absoluteMs: c.REFRESH_ABSOLUTE_LIFETIME, graceMs: c.REFRESH_REUSE_GRACE },
  };
}

/** `0`/`0s` (no pre-publication: routine rotations promote at once) or a duration. */
function durationOrZero(fallback: string) {
  return z
    .string()
    .default(fallback)
    .transform((text, ctx) => {
      if (/^0+(\.0+)?\s*(ms|s|m|h|d)?$/i.test(text.trim())) return 0;
      const value = parseDuration(text);
      if (value === undefined) {
        ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration (use e.g. 0s, 30m, 12h)` });
        return z.NEVER;
      }
      return value;
    });
}

/** An http(s) URL without query or fragment (OpenID Connect Discovery 1.0 §3); no trailing slash. */
function publicIssuer() {
  return z.string().transform((text, ctx) => {
    let url: URL | undefined;
    try {
      url = new URL(text.trim());
    } catch {
      // reported below
    }
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
      ctx.addIssue({ code: 'custom', message: 'must be an https:// (or http://) URL without query or fragment, e.g. https://auth.example.com' });
      return z.NEVER;
    }
    return url.href.replace(/\/+$/, '');
  });
}

/** Audience names: what resource servers put in their `audience` check. */
export const AUDIENCE_NAME = /^[A-Za-z0-9][A-Za-z0-9._~:/-]{0,127}$/;

/** `notes,reports` -> ['notes', 'reports']; each name checked, duplicates dropped. */
export function parseAudiences(text: string): { audiences: string[]; bad: string[] } {
  const names = text.split(',').map((name) => name.trim()).filter(Boolean);
  return { audiences: [...new Set(names.filter((name) => AUDIENCE_NAME.test(name)))], bad: names.filter((name) => !AUDIENCE_NAME.test(name)) };
}

function audienceList() {
  return z
    .string()
    .default('')
    .transform((text, ctx) => {
      const { audiences: names, bad } = parseAudiences(text);
      if (bad.length > 0) {
        ctx.addIssue({ code: 'custom', message: `${bad.map((name) => JSON.stringify(name)).join(', ')}: names are 1-128 letters, digits and . _ ~ : / - (comma-separated, e.g. notes,reports)` });
        return z.NEVER;
      }
      return names;
    });
}
