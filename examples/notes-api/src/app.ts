import express, { type ErrorRequestHandler } from 'express';
import { isRedisUnavailable, type Keyfleet } from 'keyfleet';
import type { NoteClaims } from './claims.js';
import { MAX_NOTE_LENGTH, type NotesStore } from './notes.js';
import type { UserStore } from './users.js';

// The app's own data in the `sid` session (keyfleet's session store in Redis, the cookie
// signed with the ring's rotating keys), beside what keyfleet keeps there.
declare module 'express-session' {
  interface SessionData {
    whoami?: { count: number; nodes: string[] };
  }
}

export interface AppDeps {
  kf: Keyfleet<NoteClaims>;
  users: UserStore;
  notes: NotesStore;
}

/** The notes API. keyfleet brings the credentials and its own routes; the rest is this app's. */
export function createApp({ kf, users, notes }: AppDeps): express.Express {
  const app = express();
  // First: /healthz (what HAProxy checks), the JWKS and discovery, POST /logout,
  // /logout/everywhere, /token/refresh. Mounted at the root, its router also gives every
  // request after it X-Node-Id, security headers (helmet), `trust proxy` from TRUST_PROXY
  // and the same-origin check that keeps cookie-authenticated POSTs from other sites out.
  app.use(kf.routes());

  app.post('/login', express.json({ limit: '4kb' }), async (req, res) => {
    const { username, password } = (req.body ?? {}) as { username?: unknown; password?: unknown };
    // keyfleet's throttle, shared by every node: admits the attempt first (429 with Retry-After
    // when an account or address has failed too often), then counts a wrong password as a failure.
    const user = await kf.loginThrottle.guard(String(username ?? ''), req.ip ?? 'unknown', () => users.check(username, password));
    if (!user) {
      res.status(401).json({ error: 'wrong username or password', code: 'ERR_BAD_CREDENTIALS' });
      return;
    }
    res.json(await kf.login(req, res, { user: user.name, claims: { role: user.role } }));
  });

  // `session: 'load'`: with a `sid`, express-session loads the session and saves what the
  // route changes; a request by token or `auth` cookie still never waits on Redis.
  app.get('/whoami', kf.requireUser({ session: 'load' }), (req, res) => {
    const { user, via, claims } = kf.principal(req)!;
    let session: { count: number; nodes: string[] } | undefined;
    if (via === 'session') {
      session = req.session.whoami ?? { count: 0, nodes: [] };
      session.count++;
      if (!session.nodes.includes(kf.nodeId)) session.nodes.push(kf.nodeId);
      req.session.whoami = session;
    }
    res.json({ user, via, role: claims.role, claims, node: kf.nodeId, ...(session ? { session } : {}) });
  });

  app.get('/notes', kf.requireUser(), async (req, res) => {
    res.json({ notes: await notes.list(kf.principal(req)!.user), node: kf.nodeId });
  });

  app.post('/notes', kf.requireUser(), express.json({ limit: '8kb' }), async (req, res) => {
    const { user, claims } = kf.principal(req)!;
    if (claims.role !== 'editor') {
      res.status(403).json({ error: 'only editors write notes', code: 'ERR_FORBIDDEN' });
      return;
    }
    const text: unknown = req.body?.text;
    if (typeof text !== 'string' || text.trim() === '' || text.length > MAX_NOTE_LENGTH) {
      res.status(400).json({ error: `text: a non-empty string of at most ${MAX_NOTE_LENGTH} characters`, code: 'ERR_BAD_NOTE' });
      return;
    }
    const note = await notes.add(user, text, kf.nodeId);
    if (!note) {
      res.status(409).json({ error: 'too many notes: delete some first', code: 'ERR_TOO_MANY_NOTES' });
      return;
    }
    res.status(201).json({ note, node: kf.nodeId });
  });

  app.delete('/notes/:id', kf.requireUser(), async (req, res) => {
    const { user, claims } = kf.principal(req)!;
    if (claims.role !== 'editor') {
      res.status(403).json({ error: 'only editors delete notes', code: 'ERR_FORBIDDEN' });
      return;
    }
    if (!(await notes.remove(user, String(req.params.id)))) {
      res.status(404).json({ error: 'no such note', code: 'ERR_NO_NOTE' });
      return;
    }
    res.status(204).end();
  });

  app.use(kf.notFound());
  // The notes live in Redis: when it cannot be reached, 503 (HAProxy tries a GET on another node).
  // (kf.errorHandler() alone would answer 503 ERR_REDIS_UNAVAILABLE; this app names its own code.)
  const redisDown: ErrorRequestHandler = (error, _req, res, next) => {
    if (isRedisUnavailable(error)) {
      res.status(503).json({ error: 'notes are unavailable right now', code: 'ERR_NOTES_UNAVAILABLE' });
      return;
    }
    next(error);
  };
  app.use(redisDown);
  app.use(kf.errorHandler());
  return app;
}
