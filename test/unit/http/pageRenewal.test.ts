import { describe, expect, it } from 'vitest';
import { renderPage } from '../../../app/src/demo/page.js';

// The page says when the sliding `auth` cookie was renewed (issue 12).

describe('renderPage: the auth cookie renewal', () => {
  const base = { nodeId: 'node-1', demoHint: false, dashboard: false, nonce: 'n0nce', user: 'demo' };
  const login = Date.UTC(2026, 10, 24, 21, 0, 0);

  it('renewed in this answer, earlier, or not yet; only when the cookie recognised the caller', () => {
    const now = renderPage({ ...base, via: 'cookie', cookie: { issuedAt: login + 90_000, startedAt: login, renewed: true } });
    expect(now).toContain('id="cookie-renewal" data-renewed="true"');
    expect(now).toContain('renewed just now, at <time datetime="2026-11-24T21:01:30.000Z">21:01:30 UTC</time>');
    expect(now).toContain('logged in at 21:00:00 UTC');
    const earlier = renderPage({ ...base, via: 'cookie', cookie: { issuedAt: login + 60_000, startedAt: login, renewed: false } });
    expect(earlier).toContain('last renewed at <time datetime="2026-11-24T21:01:00.000Z">21:01:00 UTC</time>');
    expect(renderPage({ ...base, via: 'cookie', cookie: { issuedAt: login, startedAt: login, renewed: false } })).toContain('not renewed yet');
    expect(renderPage({ ...base, via: 'token' })).not.toContain('cookie-renewal');
  });

  it('offers logging out everywhere', () => {
    expect(renderPage({ ...base, via: 'session' })).toContain('id="logout-everywhere"');
  });
});
