import express, { Router, type Request } from 'express';
import { z } from 'zod';
import { checkPassword, htmlHeaders, KeyfleetError, type KeyfleetHttp, type LoginThrottle, type Principal, type UserDirectory } from '../index.js';
import { renderPage } from './page.js';

// keyfleet's own demo node, built on the public entry point alone (like any app would be):
// POST /login against the USERS directory with the login throttle, GET /me, and the page at
// `/` with its visit counter kept in the session.

// The demo's own data in the `sid` session, beside what keyfleet keeps there (user, loginAt,
// claims): page views counted, and the nodes that served them.
declare module 'express-session' {
  interface SessionData {
    visits?: number;
    nodesSeen?: string[];
  }
}

export interface DemoOptions {
  /** The accounts POST /login accepts (USERS). */
  users: UserDirectory;
  /** Failed-login counters shared by every node; absent: no throttling. */
  throttle?: Pick<LoginThrottle, 'guard'>;
  /** Whether the page links to /dashboard (DASHBOARD is not off). */
  dashboard?: boolean;
}

const LoginBody = z.object({
  username: z.string().min(1).max(128),
  password: z.string().min(1).max(1024),
  audience: z.string().min(1).max(128).optional(),
});

type DemoKeyfleet = Pick<KeyfleetHttp, 'nodeId' | 'login' | 'checkAudience' | 'authenticate' | 'requireUser' | 'principal'>;

export function demoRoutes(kf: DemoKeyfleet, { users, throttle, dashboard = false }: DemoOptions): Router {
  const router = Router();

  router.post('/login', express.json({ limit: '8kb', strict: true }), async (req, res) => {
    const parsed = LoginBody.safeParse(req.body);
    if (!parsed.success) throw new KeyfleetError('ERR_BAD_LOGIN_BODY', 'expected JSON {"username","password"} and optionally "audience"');
    const { username, password, audience } = parsed.data;
    kf.checkAudience(audience);
    // Admitted before the password is checked (over a limit: 429, no scrypt work at all); a
    // wrong password is then counted as a failure, a right one is not.
    const check = () => checkPassword(users, username, password);
    const right = throttle ? await throttle.guard(username, req.ip ?? 'unknown', check) : await check();
    if (!right) throw new KeyfleetError('ERR_BAD_CREDENTIALS', 'wrong username or password');
    res.json(await kf.login(req, res, { user: username, ...(audience ? { audience } : {}) }));
  });

  // The API reads; only page views count visits. So /me costs no Redis round trip by token or
  // auth cookie, and exactly one (the session read) by sid.
  router.get('/me', kf.requireUser(), (req, res) => {
    const { cookie: _generation, claims, ...principal } = kf.principal(req)!;
    res.setHeader('Cache-Control', 'no-store');
    res.json({ ...principal, ...(Object.keys(claims).length > 0 ? { claims } : {}), node: kf.nodeId, ...sessionView(req, kf.principal(req)!) });
  });

  // The page identifies its caller like /me, on the node that serves it, and loads the
  // session to count the visit; a refused credential is a notice on the page, not an error.
  const identifyPage = kf.authenticate({ session: 'load' });
  router.get('/', (req, res, next) => {
    identifyPage(req, res, (error?: unknown) => {
      if (error !== undefined && !(error instanceof KeyfleetError)) return next(error);
      const principal = error === undefined ? kf.principal(req) : undefined;
      if (principal && principal.via !== 'token' && req.session?.user === principal.user) countVisit(req, kf.nodeId);
      const { claims: _claims, ...shown } = principal ?? { claims: {} };
      const view = principal ? { ...shown, ...sessionView(req, principal) } : error instanceof KeyfleetError ? { notice: error.code } : {};
      const nonce = htmlHeaders(res);
      res.send(renderPage({ nodeId: kf.nodeId, ...view, demoHint: users.has('demo'), dashboard, nonce }));
    });
  });

  return router;
}

function countVisit(req: Request, nodeId: string): void {
  req.session.visits = (req.session.visits ?? 0) + 1;
  const seen = new Set(req.session.nodesSeen ?? []);
  seen.add(nodeId);
  req.session.nodesSeen = [...seen];
}

/** The visit counter, when this request's session belongs to the caller (never for tokens); 0 before the first page view. */
function sessionView(req: Request, principal: Principal): { visits?: number; nodesSeen?: string[] } {
  if (principal.via === 'token' || req.session?.user !== principal.user) return {};
  return { visits: req.session.visits ?? 0, nodesSeen: req.session.nodesSeen ?? [] };
}
