import type { History, Op, OpKind } from './history.js';
import type { Rng } from './rng.js';

// Users through the balancer, recording every operation: log in, then /me by bearer token,
// by `auth` cookie and by `sid` session, now and then a logout; a fresh login every few
// requests. A credential refused or ended is dropped and the worker logs in again.

/** Longer than HAProxy's `timeout server` (30 s): a request it holds gets its retry first. */
const REQUEST_TIMEOUT_MS = 40_000;

interface Credentials {
  token: string;
  tokenKid?: string;
  expiresAt?: number;
  authCookie: string;
  authKid?: string;
  sidCookie?: string;
  loginStart: number;
  loginEnd: number;
  uses: number;
}

export interface ClientOptions {
  workers: number;
  /** Log in again after this many requests with one login. */
  requestsPerLogin: number;
  /** Never present a credential older than this (it must not expire in flight). */
  maxCredentialAgeMs: number;
  logoutChance: number;
}

export const headerKid = (compact: string): string | undefined => {
  try {
    return JSON.parse(Buffer.from(compact.split('.')[0]!, 'base64url').toString('utf8')).kid;
  } catch {
    return undefined;
  }
};

const tokenExp = (token: string): number | undefined => {
  try {
    return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')).exp * 1000;
  } catch {
    return undefined;
  }
};

export async function call(url: string, init: RequestInit): Promise<{ status: number; code?: string; node?: string; body?: any; cookies: string[] }> {
  try {
    const response = await fetch(url, { ...init, redirect: 'manual', signal: init.signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    const text = await response.text();
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    return { status: response.status, code: body?.code, node: response.headers.get('x-node-id') ?? undefined, body, cookies: response.headers.getSetCookie() };
  } catch (error) {
    const name = error instanceof Error ? ((error.cause as { code?: string } | undefined)?.code ?? error.name) : 'Error';
    return { status: 0, code: name, cookies: [] };
  }
}

export function startClients(baseUrl: string, history: History, rng: Rng, options: ClientOptions) {
  let stopping = false;

  const record = (worker: number, kind: OpKind, start: number, reply: Awaited<ReturnType<typeof call>>, extra: Partial<Op> = {}) =>
    history.op({ worker, kind, start, end: Date.now(), status: reply.status, ...(reply.code ? { code: reply.code } : {}), ...(reply.node ? { node: reply.node } : {}), ...extra });

  const worker = async (index: number, random: Rng) => {
    let cred: Credentials | undefined;
    while (!stopping) {
      const now = Date.now();
      if (!cred || cred.uses >= options.requestsPerLogin || now - cred.loginStart > options.maxCredentialAgeMs) {
        const start = Date.now();
        const reply = await call(`${baseUrl}/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username: 'demo', password: 'demo-password' }),
        });
        const pick = (name: string) => reply.cookies.find((c) => c.startsWith(`${name}=`))?.split(';')[0];
        const ok = reply.status === 200 && typeof reply.body?.token === 'string';
        const session = ok && reply.body.session !== false;
        const op = record(index, 'login', start, reply, ok ? { session } : {});
        if (ok) {
          const token = reply.body.token as string;
          const authCookie = pick('auth')!;
          cred = {
            token,
            tokenKid: headerKid(token),
            expiresAt: tokenExp(token),
            authCookie,
            authKid: headerKid(authCookie.slice('auth='.length)),
            sidCookie: session ? pick('sid') : undefined,
            loginStart: start,
            loginEnd: op.end,
            uses: 0,
          };
        } else {
          cred = undefined;
          // An answer that is not a login (the cluster is down): no busy loop.
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        continue;
      }
      cred.uses++;
      const from = { loginStart: cred.loginStart, loginEnd: cred.loginEnd };
      if (random.next() < options.logoutChance) {
        const start = Date.now();
        const cookie = [cred.authCookie, cred.sidCookie].filter(Boolean).join('; ');
        const reply = await call(`${baseUrl}/logout`, { method: 'POST', headers: { authorization: `Bearer ${cred.token}`, cookie } });
        record(index, 'logout', start, reply, from);
        cred = undefined;
        continue;
      }
      const kinds: OpKind[] = cred.sidCookie ? ['me-token', 'me-cookie', 'me-session'] : ['me-token', 'me-cookie'];
      const kind = random.pick(kinds);
      const headers: Record<string, string> =
        kind === 'me-token' ? { authorization: `Bearer ${cred.token}` } : { cookie: kind === 'me-cookie' ? cred.authCookie : cred.sidCookie! };
      const extra: Partial<Op> =
        kind === 'me-token' ? { kid: cred.tokenKid, expiresAt: cred.expiresAt } : kind === 'me-cookie' ? { kid: cred.authKid } : {};
      const start = Date.now();
      const reply = await call(`${baseUrl}/me`, { headers });
      record(index, kind, start, reply, { ...from, ...extra });
      // A refused credential is not used again (a revoked key's, for instance): log in anew.
      if (reply.status === 401) cred = undefined;
    }
  };

  const running = Promise.all(Array.from({ length: options.workers }, (_, index) => worker(index, rng.fork())));
  return {
    async stop(): Promise<void> {
      stopping = true;
      await running;
    },
  };
}
