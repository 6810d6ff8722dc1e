// Every error code keyfleet uses, in one place: the HTTP error handler answers `status`, the
// CLI exits with `exitCode` (default 1), and docs/api.md lists them (a unit test checks it).
// Callers and tests branch on the code, never on message text; `message` is the default one.

export interface ErrorSpec {
  /** What the HTTP error handler answers (a 5xx other than 503 hides its detail). */
  status: number;
  /** The default message, safe to show a client for a 4xx. */
  message: string;
  /** What the `keyfleet` CLI exits with when a command ends with this code; default 1. */
  exitCode?: number;
}

const e = (status: number, message: string, exitCode?: number): ErrorSpec => (exitCode === undefined ? { status, message } : { status, message, exitCode });

export const ERRORS = {
  // -- requests --------------------------------------------------------------------------
  ERR_NOT_FOUND: e(404, 'not found'),
  ERR_METHOD_NOT_ALLOWED: e(405, 'method not allowed'),
  ERR_BAD_JSON: e(400, 'request body is not valid JSON'),
  ERR_BODY_TOO_LARGE: e(413, 'request body too large'),
  ERR_BAD_ENCODING: e(415, 'unsupported content encoding'),
  ERR_BAD_CHARSET: e(415, 'unsupported charset'),
  ERR_ABORTED: e(400, 'request aborted'),
  ERR_CROSS_SITE: e(403, 'cross-site request refused'),
  ERR_INTERNAL: e(500, 'internal error'),

  // -- logging in ------------------------------------------------------------------------
  ERR_BAD_LOGIN_BODY: e(400, 'expected JSON {"username","password"} and optionally "audience"'),
  ERR_BAD_CREDENTIALS: e(401, 'wrong username or password'),
  ERR_TOO_MANY_ATTEMPTS: e(429, 'too many failed logins; try again later'),
  ERR_UNKNOWN_AUDIENCE: e(400, 'unknown audience: ask for a resource server registered in AUDIENCES (keyfleet audiences)'),
  ERR_BAD_CLAIMS: e(500, "the app's claims cannot be minted (reserved name, over 1 KiB, not JSON, or refused by its schema)"),

  // -- credentials -----------------------------------------------------------------------
  ERR_NO_CREDENTIALS: e(401, 'no token, auth cookie or session'),
  ERR_BAD_AUTHORIZATION: e(401, 'expected "Authorization: Bearer <token>"'),
  ERR_BAD_COOKIE: e(401, 'unreadable Cookie header'),
  ERR_CLAIMS_REJECTED: e(401, "the credential's claims do not match this app's claims schema; log in again"),
  ERR_TOKEN_TOO_LARGE: e(401, 'token too large'),
  ERR_TOKEN_MALFORMED: e(401, 'malformed token'),
  ERR_TOKEN_ALG: e(401, 'token algorithm not allowed'),
  ERR_TOKEN_KEY: e(401, 'token key unknown or revoked'),
  ERR_TOKEN_INVALID: e(401, 'token invalid'),
  ERR_TOKEN_CLAIMS: e(401, 'token claims invalid'),
  ERR_TOKEN_EXPIRED: e(401, 'token expired'),
  ERR_TOKEN_REVOKED: e(401, 'token revoked (logged out)'),
  ERR_COOKIE_TOO_LARGE: e(401, 'cookie too large'),
  ERR_COOKIE_MALFORMED: e(401, 'malformed auth cookie'),
  ERR_COOKIE_KEY: e(401, 'cookie key unknown or revoked'),
  ERR_COOKIE_INVALID: e(401, 'cookie invalid'),
  ERR_COOKIE_CLAIMS: e(401, 'cookie claims invalid'),
  ERR_COOKIE_EXPIRED: e(401, 'cookie expired'),
  ERR_COOKIE_REVOKED: e(401, 'auth cookie revoked (logged out)'),
  ERR_SESSION_INVALID: e(401, 'session unknown, expired or tampered with'),
  ERR_SESSION_REVOKED: e(401, 'session ended (logged out everywhere)'),
  ERR_SESSION_STORE_UNAVAILABLE: e(503, 'the session store is unavailable'),
  ERR_BAD_REFRESH_BODY: e(400, 'expected JSON {"refreshToken"}'),
  ERR_REFRESH_INVALID: e(401, 'refresh token unknown, expired or revoked'),
  ERR_REFRESH_EXPIRED: e(401, 'refresh token expired'),
  ERR_REFRESH_REVOKED: e(401, 'refresh token revoked'),
  ERR_REFRESH_REUSED: e(401, 'refresh token already used; its whole family is revoked'),
  ERR_REFRESH_UNAVAILABLE: e(503, 'the refresh-token store is unavailable'),
  ERR_REVOCATION_UNAVAILABLE: e(503, 'the other nodes cannot be told while Redis is unavailable; try again'),
  ERR_REDIS_UNAVAILABLE: e(503, 'Redis is unavailable right now; try again'),

  // -- the dashboard ---------------------------------------------------------------------
  ERR_DASHBOARD_TOKEN_REQUIRED: e(401, 'the dashboard needs its token (Authorization: Bearer <DASHBOARD_TOKEN>)'),
  ERR_DASHBOARD_TOKEN_INVALID: e(401, 'wrong dashboard token'),
  ERR_DASHBOARD_LOGIN_REQUIRED: e(401, 'log in first (POST /login, or the form at /)'),
  ERR_DASHBOARD_LOGIN_INVALID: e(401, 'login not accepted'),
  ERR_DASHBOARD_USER_UNKNOWN: e(401, 'this account no longer exists'),
  ERR_DASHBOARD_NOT_OPERATOR: e(403, 'this account may not see the dashboard (DASHBOARD_USERS)'),

  // -- the node and its key ring (503: the balancer retries another node) ----------------
  ERR_NOT_READY: e(503, 'key ring not loaded yet'),
  ERR_RING_STALE: e(503, 'this node cannot confirm its key ring is current; another node can answer'),
  ERR_NO_ACTIVE_KEY: e(503, 'no active key'),
  ERR_MASTER_KEY_MISMATCH: e(500, 'the key ring is wrapped under another master key (KEYRING_MASTER_KEY)'),
  ERR_RING_FORMAT: e(500, 'the key ring is not in a known format'),
  ERR_RING_INTEGRITY: e(500, 'the key ring fails its authentication check'),
  ERR_RING_ROLLBACK: e(500, 'Redis holds an older ring than one already served'),
  ERR_RING_SWAPPED: e(500, 'Redis holds another ring than the one served'),
  ERR_RING_DOWNGRADE: e(500, 'Redis holds an unauthenticated format-1 ring after an authenticated one'),
  ERR_RING_VERSION: e(409, 'the new ring version is not above the stored one'),
  ERR_RING_CONFLICT: e(409, 'the ring kept changing; run the command again'),
  ERR_RING_EMPTY: e(503, 'the key ring is empty'),
  ERR_KEY_MATERIAL_FORMAT: e(500, 'stored key material is not in a known format'),
  ERR_KEY_STATE: e(409, 'the key is not in the state this change needs'),
  ERR_ALREADY_STAGED: e(409, 'a key of this purpose is already staged'),
  ERR_UNKNOWN_KID: e(404, 'no such key in the ring'),
  ERR_NOT_PRIMARY: e(409, 'this node does not hold the primary lease'),
  ERR_ROTATION_RUNNING: e(409, 'a rotation of this purpose is already running'),
  ERR_BAD_PURPOSE: e(400, 'unknown purpose (sign, encrypt, cookie or all)'),

  // -- read from Redis: logged, and the entry skipped (never an answer) --------------------
  ERR_NOT_JSON: e(500, 'an entry read from Redis is not JSON'),
  ERR_BAD_SHAPE: e(500, 'an entry read from Redis is not what keyfleet writes there'),
  ERR_COMMANDS_WRONGTYPE: e(500, 'the operators\' command key holds another type than a list'),

  // -- the CLI ---------------------------------------------------------------------------
  ERR_CONFIG: e(500, 'bad configuration', 1),
  ERR_USAGE: e(400, 'bad usage', 1),
  ERR_NO_PRIMARY: e(503, 'no node holds the primary lease', 1),
  ERR_NO_REPLY: e(504, 'the primary did not answer in time', 1),
  ERR_NODES_UNCONFIRMED: e(504, 'not every live node confirmed in time; the change is not complete', 3),
  ERR_NEXT_KEY_NOT_DUE: e(409, 'the next signing key has not been published for JWKS_PREPUBLISH yet', 4),
  ERR_CLI: e(500, 'the command failed', 1),
  /** A code from outside the catalogue (a reply from another version), folded. */
  ERR_OTHER: e(500, 'failed', 1),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export const isErrorCode = (code: unknown): code is ErrorCode => typeof code === 'string' && Object.hasOwn(ERRORS, code);

/** The exit code of the CLI for a code (1 unless the catalogue says otherwise). */
export const exitCodeOf = (code: ErrorCode): number => (ERRORS[code] as ErrorSpec).exitCode ?? 1;
