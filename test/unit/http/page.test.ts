import { describe, expect, it } from 'vitest';
import { renderDashboardPage } from '../../../app/src/http/dashboardPage.js';
import { escapeHtml, nodeHue } from '../../../app/src/http/html.js';
import { renderPage } from '../../../app/src/demo/page.js';

const EVIL = `<img src=x onerror="alert('x')">&`;

describe('escapeHtml and nodeHue', () => {
  it('escapes the five HTML metacharacters', () => {
    expect(escapeHtml(EVIL)).toBe('&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;');
  });
  it('gives each node a stable hue', () => {
    expect(nodeHue('node-1')).toBe(nodeHue('node-1'));
    expect(nodeHue('node-1')).toBeGreaterThanOrEqual(0);
    expect(nodeHue('node-1')).toBeLessThan(360);
    expect(new Set(['node-1', 'node-2', 'node-3'].map(nodeHue)).size).toBe(3);
  });
});

describe('renderPage', () => {
  const base = { nodeId: 'node-1', demoHint: true, dashboard: false, nonce: 'n0nce' };

  it('escapes every value it shows', () => {
    const html = renderPage({ ...base, nodeId: EVIL, user: EVIL, via: 'cookie', visits: 2, nodesSeen: [EVIL, 'node-2'], nonce: '"><x' });
    expect(html).not.toContain('<img');
    expect(html).not.toContain('"><x');
    expect(html).toContain('&lt;img src=x');
  });

  it('anonymous: the login form, prefilled only when the demo account exists', () => {
    expect(renderPage(base)).toContain('value="demo-password"');
    const plain = renderPage({ ...base, demoHint: false });
    expect(plain).toContain('id="login-form"');
    expect(plain).not.toContain('value="demo');
    expect(plain).not.toContain('id="demo-hint"');
  });

  it('a refused credential: a notice with its code', () => {
    const html = renderPage({ ...base, notice: 'ERR_SESSION_STORE_UNAVAILABLE' });
    expect(html).toContain('session store (Redis) is unreachable');
    expect(html).toContain('<code>ERR_SESSION_STORE_UNAVAILABLE</code>');
  });

  it('logged in without a session: says the counter is missing, not zero', () => {
    const html = renderPage({ ...base, user: 'demo', via: 'cookie' });
    expect(html).toContain('id="visits" data-missing="true"');
    expect(html).toContain('the auth cookie');
  });

  it('links the dashboard only when it is on', () => {
    expect(renderPage(base)).not.toContain('href="/dashboard"');
    expect(renderPage({ ...base, dashboard: true })).toContain('href="/dashboard"');
  });
});

describe('renderDashboardPage', () => {
  it('is a shell with no data, escaping what it carries', () => {
    const html = renderDashboardPage({ nodeId: EVIL, mode: 'login', nonce: 'abc' });
    expect(html).not.toContain('<img');
    expect(html).toContain('data-access="login"');
    expect(html).toContain('<script nonce="abc">');
    const plain = renderDashboardPage({ nodeId: 'node-1', mode: 'public', nonce: 'abc' });
    expect(plain).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    expect(plain).not.toMatch(/ on[a-z]+=/);
  });
});
