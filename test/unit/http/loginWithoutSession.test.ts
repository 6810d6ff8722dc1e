import type { AddressInfo } from 'node:net';
import session from 'express-session';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword, parsePasswordHash } from '../../../app/src/auth/password.js';
import { createApp, KIT_DEFAULTS } from '../support/app.js';
import { loadedHolder, silentLog } from '../support/ring.js';

// A node that cannot store the session (Redis away, or this node cut off from it) still logs
// the user in with a token and an `auth` cookie, but must not hand out a `sid` for a session
// that was never stored: every node would then refuse it as unknown (found by the partition
// test: a login that landed on the cut-off node).

class FailingStore extends session.Store {
  get(_sid: string, callback: (error: unknown, data?: session.SessionData | null) => void) {
    callback(null, null);
  }
  set(_sid: string, _data: session.SessionData, callback?: (error?: unknown) => void) {
    callback?.(new Error('ETIMEDOUT'));
  }
  destroy(_sid: string, callback?: (error?: unknown) => void) {
    callback?.();
  }
}

describe('POST /login when the session cannot be stored', () => {
  let base: string;
  let close: () => void;
  beforeAll(async () => {
    const ringState = await loadedHolder(Date.now());
    const app = createApp({
      ...KIT_DEFAULTS,
      holder: ringState.holder,
      users: new Map([['demo', parsePasswordHash(await hashPassword('demo-password'))!]]),
      session: session({ name: 'sid', secret: ['a-test-secret'], store: new FailingStore(), resave: false, saveUninitialized: false }),
      clock: { now: () => Date.now() },
      log: silentLog,
      isDraining: () => false,
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () => server.close();
  });
  afterAll(() => close?.());

  it('answers with a token and an auth cookie, session false, and no sid cookie', async () => {
    const response = await fetch(`${base}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'demo', password: 'demo-password' }),
      signal: AbortSignal.timeout(10_000),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ session: false, tokenType: 'Bearer' });
    const cookies = response.headers.getSetCookie().map((cookie) => cookie.split('=')[0]);
    expect(cookies).toContain('auth');
    expect(cookies).not.toContain('sid');
  });
});

