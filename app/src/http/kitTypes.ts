import type { ErrorRequestHandler, Request, RequestHandler, Response, Router } from 'express';
import type { Claims } from '../auth/appClaims.js';
import type { Principal } from '../auth/claims.js';

// The public types of the request side (re-exported by index.ts), and the augmentations of
// express-session's SessionData and Express's Request that come with them.

declare module 'express-session' {
  interface SessionData {
    /** When the login that started this session was (ms): logging out everywhere ends older ones. */
    loginAt?: number;
    /** The app's claims given at login (checked then): a session-authenticated request reads them here. */
    claims?: Record<string, unknown>;
  }
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** Set by keyfleet's authenticate() and requireUser() once a credential is accepted. */
      principal?: Principal;
    }
  }
}

export interface AuthenticateOptions {
  /**
   * What a request carrying a `sid` gets: `read` (default) looks the session up without
   * express-session's load-and-save machinery (`req.session` is then read-only, and a request
   * authenticated by token or `auth` cookie never waits on Redis); `load` runs the session
   * middleware whenever a `sid` comes along, so the route may change `req.session` and have
   * it saved.
   */
  session?: 'read' | 'load';
}

export interface LoginOptions<C extends object = Claims> {
  /** The user, as the app's own user store names them (the token's `sub`). */
  user: string;
  /** The app's own claims, carried by the token, the `auth` cookie and the session (≤ 1 KiB, no reserved names). */
  claims?: C;
  /** A resource server registered in AUDIENCES; default keyfleet's own. */
  audience?: string;
}

export interface LoginResult {
  token: string;
  tokenType: 'Bearer';
  /** Seconds the access token lives (TOKEN_TTL). */
  expiresIn: number;
  /** Present when Redis could store its family. */
  refreshToken?: string;
  refreshExpiresIn?: number;
  node: string;
  /** Whether a `sid` session was started (it needs Redis; the token and `auth` cookie do not). */
  session: boolean;
  audience?: string;
}

export interface RoutesOptions {
  /** Mount the dashboard (as DASHBOARD says). Default true. */
  dashboard?: boolean;
}

/** The request side of a keyfleet node: what an Express app mounts and calls. */
export interface KeyfleetHttp<C extends object = Claims> {
  /** NODE_ID: in `X-Node-Id` and every answer of the kit's routes. */
  readonly nodeId: string;
  /** The kit's routes: /healthz, /.well-known/*, POST /logout, /logout/everywhere, /token/refresh, /dashboard. */
  routes(options?: RoutesOptions): Router;
  /** Sets `req.principal` when a credential is presented; a bad one is a 401 (next(err)); none: no principal. */
  authenticate(options?: AuthenticateOptions): RequestHandler;
  /** Like authenticate(), but no credential at all is a 401 ERR_NO_CREDENTIALS. */
  requireUser(options?: AuthenticateOptions): RequestHandler;
  /** The principal authenticate() set, its claims typed by the app's schema; undefined when none. */
  principal(req: Request): Principal<C> | undefined;
  /** Mints the access token (and refresh token), sets the `auth` cookie and starts a `sid` session. */
  login(req: Request, res: Response, options: LoginOptions<C>): Promise<LoginResult>;
  /** Throws ERR_UNKNOWN_AUDIENCE unless `audience` is keyfleet's own or registered in AUDIENCES. */
  checkAudience(audience: string | undefined): void;
  /** An access token for `user` outside any request (a job, a test); no cookie, no session, no refresh token. */
  mintToken(user: string, options?: { claims?: C; audience?: string }): Promise<{ token: string; expiresIn: number }>;
  /** Checks a bearer token as requireUser() does (in memory: ring and revocations); throws a 401 KeyfleetError. */
  verifyToken(token: string): Promise<Principal<C>>;
  /** express-session on the Redis store, `sid` signed with the ring's rotating cookie keys. */
  session(): RequestHandler;
  /** KeyfleetError (and body-parser errors) → JSON `{error, code}` with its status; 5xx detail hidden. */
  errorHandler(): ErrorRequestHandler;
  /** 404 JSON `{error, code: 'ERR_NOT_FOUND'}`. */
  notFound(): RequestHandler;
}
