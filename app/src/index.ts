// keyfleet's public surface: everything `import … from 'keyfleet'` reaches, and nothing else
// (package.json `exports`). docs/api.md describes it; a unit test type-checks its examples.

// The node inside an app's process.
export { createKeyfleet } from './keyfleet.js';
export type { Keyfleet, KeyfleetConfig, KeyfleetOptions, ServeOptions } from './keyfleet.js';

// The request side: routes, middleware, login.
export type { AuthenticateOptions, KeyfleetHttp, LoginOptions, LoginResult, RoutesOptions } from './http/kit.js';
export type { Principal } from './auth/claims.js';
export { MAX_CLAIMS_BYTES, RESERVED_CLAIMS } from './auth/appClaims.js';
export type { Claims, ClaimsSchema } from './auth/appClaims.js';
export { AUTH_COOKIE } from './auth/authCookie.js';
export { SESSION_COOKIE } from './auth/session.js';

// Errors with stable codes.
export { ConfigError, KeyfleetError } from './lib/errors.js';
export { ERRORS, exitCodeOf, isErrorCode, type ErrorCode, type ErrorSpec } from './lib/errorCodes.js';
export { TooManyAttempts } from './auth/throttle.js';
export { isRedisUnavailable, REDIS_UNAVAILABLE_CODES } from './lib/redisUnavailable.js';

// The app's own data in keyfleet's Redis (kf.redis): keys under keyfleet:app:<app>:.
export { appKey, APP_KEY_PREFIX } from './lib/appKey.js';

// For an app's own login route: passwords (scrypt, the USERS format) and the login throttle.
export { checkPassword, type UserDirectory } from './auth/users.js';
export { hashPassword, parsePasswordHash, type PasswordHash } from './auth/password.js';
export type { LoginThrottle, LoginTicket } from './auth/throttle.js';

// For HTML views: the headers (CSP nonce) and helpers keyfleet's own pages use.
export { escapeHtml, htmlHeaders, nodeHue } from './http/html.js';

export type { Logger } from './lib/log.js';
