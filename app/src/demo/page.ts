import { escapeHtml as e, nodeHue } from '../index.js';

// The page for people at `/`: which node served this very request, a login form, then who
// you are, how the node knew, and a visit counter kept in the session. Rendered on the node
// that serves the request, so a reload shows the node changing and the login staying.
// A few lines of script only for logging in and out (POST /login takes JSON).

export type Via = 'token' | 'cookie' | 'session';

export interface PageView {
  nodeId: string;
  /** The caller, when a credential was accepted. */
  user?: string;
  via?: Via;
  /** From the `sid` session, when the request carried one that belongs to `user`. */
  visits?: number;
  nodesSeen?: string[];
  /** The code of a credential that was presented and refused (expired, tampered...). */
  notice?: string;
  /** Prefill the login form with the demo account (only when USERS has `demo`). */
  demoHint: boolean;
  /** Link to /dashboard (when DASHBOARD is not off). */
  dashboard: boolean;
  /** CSP nonce for the inline style and script. */
  nonce: string;
  /** The `auth` cookie's generation (ms), when it recognised the caller: shown with its renewal. */
  cookie?: { issuedAt: number; startedAt: number; renewed: boolean };
}

const VIA_TEXT: Record<Via, [string, string]> = {
  cookie: ['the auth cookie', 'an encrypted JWE opened with the ring’s encrypt key, in memory: no Redis needed'],
  session: ['the sid session', 'a signed session id, looked up in Redis'],
  token: ['an access token', 'a JWT in the Authorization header, verified with the ring’s sign key'],
};

const NOTICE_TEXT: Record<string, string> = {
  ERR_SESSION_STORE_UNAVAILABLE: 'The session store (Redis) is unreachable right now.',
  ERR_NOT_READY: 'This node has not loaded the key ring yet.',
};

export function renderPage(view: PageView): string {
  const hues = new Set([view.nodeId, ...(view.nodesSeen ?? [])].map(nodeHue));
  const loggedIn = view.user !== undefined;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>keyfleet · ${e(view.nodeId)}</title>
<link rel="icon" href="data:,">
<style nonce="${e(view.nonce)}">
${PAGE_CSS}
${[...hues].map((hue) => `.h${hue} { --hue: ${hue}; }`).join('\n')}
</style>
</head>
<body>
<header class="top"><span class="brand">keyfleet</span> <span class="tagline">one key ring, many nodes</span></header>
<main>
<section class="served" aria-labelledby="served-title">
  <h1 id="served-title">This page was served by <span class="node h${nodeHue(view.nodeId)}" id="node">${e(view.nodeId)}</span></h1>
  <p>Reload: HAProxy sends each request to the next node${loggedIn ? ', and your login follows you' : '. Log in and your login follows you'}.</p>
</section>
${loggedIn ? renderMe(view) : renderLogin(view)}
</main>
<footer>
  <nav aria-label="More">
    ${view.dashboard ? '<a href="/dashboard">Dashboard</a> · ' : ''}<a href="/healthz">/healthz</a> · <a href="/me">/me</a> · <a href="/.well-known/jwks.json">JWKS</a>
  </nav>
</footer>
<script nonce="${e(view.nonce)}">
${PAGE_SCRIPT}
</script>
</body>
</html>
`;
}

function renderLogin(view: PageView): string {
  const notice = view.notice === undefined ? '' : `<p class="notice" id="notice" role="alert">${
    e(NOTICE_TEXT[view.notice] ?? 'Your login was not accepted (expired, revoked or tampered with); please log in again.')
  } <code>${e(view.notice)}</code></p>`;
  const value = (text: string) => (view.demoHint ? ` value="${e(text)}"` : '');
  return `<section class="card" id="login" aria-labelledby="login-title">
  <h2 id="login-title">Log in</h2>
  ${notice}
  <form id="login-form">
    <label for="username">Username</label>
    <input id="username" name="username" autocomplete="username" required maxlength="128"${value('demo')}>
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024"${value('demo-password')}>
    ${view.demoHint ? '<p class="hint" id="demo-hint">Prefilled with the demo account from <code>compose.yaml</code> (demo only).</p>' : ''}
    <button type="submit">Log in</button>
    <p class="status" id="login-status" role="status" aria-live="polite"></p>
  </form>
  <noscript><p class="hint">Logging in needs JavaScript: the form posts JSON to <code>/login</code>.</p></noscript>
</section>`;
}

function renderMe(view: PageView): string {
  const [how, detail] = VIA_TEXT[view.via ?? 'cookie'];
  const seen = view.nodesSeen ?? [];
  const counted = view.visits !== undefined;
  return `<section class="card" id="me" aria-labelledby="me-title">
  <h2 id="me-title">You are <strong id="user">${e(view.user!)}</strong></h2>
  <dl>
    <dt>Recognised by</dt>
    <dd><strong id="via" data-via="${e(view.via ?? 'cookie')}">${e(how)}</strong> <span class="detail">${e(detail)}</span></dd>
    <dt>Visits in this session</dt>
    <dd>${counted ? `<strong class="count" id="visits">${view.visits}</strong> <span class="detail">kept in your sid session in Redis and counted by whichever node serves you</span>` : '<span id="visits" data-missing="true">–</span> <span class="detail">no session to count in (it ended, or Redis is unreachable); your login still works</span>'}</dd>
    <dt>Nodes seen so far</dt>
    <dd><ul class="chips" id="nodes-seen" aria-label="Nodes seen so far">${seen
      .map((id) => `<li class="chip h${nodeHue(id)}${id === view.nodeId ? ' current' : ''}"${id === view.nodeId ? ' aria-current="true"' : ''}>${e(id)}</li>`)
      .join('')}</ul> <span class="detail" id="nodes-count">${seen.length} of them</span></dd>
  </dl>
${view.via === 'cookie' && view.cookie ? renderRenewal(view.cookie) : ''}
  <p class="actions"><a class="button" id="reload" href="/">Reload</a> <button type="button" id="logout" class="secondary">Log out</button> <button type="button" id="logout-everywhere" class="secondary">Log out everywhere</button></p>
  <p class="status" id="login-status" role="status" aria-live="polite"></p>
</section>`;
}

const clockTime = (ms: number) => `${new Date(ms).toISOString().slice(11, 19)} UTC`;

/** When the sliding `auth` cookie was last sealed: renewed in this very answer, or earlier. */
function renderRenewal(cookie: NonNullable<PageView['cookie']>): string {
  const when = cookie.renewed
    ? `renewed just now, at <time datetime="${new Date(cookie.issuedAt).toISOString()}">${clockTime(cookie.issuedAt)}</time>`
    : cookie.issuedAt > cookie.startedAt
      ? `last renewed at <time datetime="${new Date(cookie.issuedAt).toISOString()}">${clockTime(cookie.issuedAt)}</time>`
      : 'not renewed yet';
  return `  <p class="renewal" id="cookie-renewal" data-renewed="${cookie.renewed}" data-issued-at="${cookie.issuedAt}" data-started-at="${cookie.startedAt}">Your auth cookie was ${when} <span class="detail">logged in at ${clockTime(cookie.startedAt)}; it renews itself while you are active (after half its idle timeout, or after a key rotation) and ends at its absolute lifetime</span></p>
`;
}

const PAGE_CSS = `
  :root { --ink: #1b2430; --muted: #556070; --line: #d9dee5; --accent: #1f5fbf; color-scheme: light; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #f5f7fa; }
  .top { background: var(--ink); color: #fff; padding: .6rem 1.25rem; }
  .brand { font-weight: 700; letter-spacing: .02em; }
  .tagline { color: #c6cfdb; margin-left: .5rem; font-size: .9rem; }
  main { max-width: 42rem; margin: 0 auto; padding: 1.5rem 1.25rem; }
  h1 { font-size: 1.35rem; font-weight: 600; margin: 0 0 .5rem; line-height: 2.4rem; }
  h2 { font-size: 1.2rem; margin: 0 0 1rem; }
  .node { display: inline-block; font: 700 1.5rem/1.3 ui-monospace, "DejaVu Sans Mono", monospace; padding: .1rem .6rem; border-radius: .4rem;
          background: hsl(var(--hue) 75% 90%); color: hsl(var(--hue) 70% 22%); border: 2px solid hsl(var(--hue) 55% 45%); }
  .card { background: #fff; border: 1px solid var(--line); border-radius: .6rem; padding: 1.25rem 1.5rem; margin-top: 1.25rem; }
  form { display: grid; gap: .35rem; max-width: 22rem; }
  label { font-weight: 600; font-size: .95rem; }
  input { font: inherit; padding: .45rem .6rem; border: 1px solid #9aa5b4; border-radius: .35rem; margin-bottom: .4rem; }
  button, .button { font: inherit; font-weight: 600; cursor: pointer; border: 0; border-radius: .35rem; padding: .5rem 1rem;
                    background: var(--accent); color: #fff; text-decoration: none; display: inline-block; }
  button.secondary { background: #e6eaf0; color: var(--ink); }
  button:focus-visible, .button:focus-visible, input:focus-visible, a:focus-visible { outline: 3px solid #f2b705; outline-offset: 2px; }
  form button { justify-self: start; margin-top: .3rem; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: .6rem 1.25rem; margin: 0 0 1rem; }
  dt { color: var(--muted); font-size: .95rem; }
  dd { margin: 0; }
  .detail { display: block; color: var(--muted); font-size: .85rem; }
  .count { font-size: 1.6rem; line-height: 1; }
  .chips { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: .35rem; }
  .chip { font: 600 .9rem ui-monospace, "DejaVu Sans Mono", monospace; padding: .1rem .5rem; border-radius: 1rem;
          background: hsl(var(--hue) 75% 92%); color: hsl(var(--hue) 70% 22%); border: 1px solid hsl(var(--hue) 55% 60%); }
  .chip.current { border-width: 2px; border-color: hsl(var(--hue) 55% 40%); }
  .hint { color: var(--muted); font-size: .9rem; margin: 0; }
  .notice { background: #fff4e0; border: 1px solid #e5b567; border-radius: .35rem; padding: .5rem .75rem; }
  .status:empty { display: none; }
  .status { margin: .25rem 0 0; color: #8a1c1c; }
  .renewal { color: var(--muted); font-size: .95rem; margin: 0 0 1rem; }
  .actions { display: flex; gap: .5rem; margin: 0; }
  footer { max-width: 42rem; margin: 0 auto; padding: 0 1.25rem 2rem; color: var(--muted); font-size: .9rem; }
  a { color: var(--accent); }
  code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .9em; }
  @media (max-width: 30rem) { dl { grid-template-columns: 1fr; gap: .15rem; } dd { margin-bottom: .6rem; } }
`;

// No data from the server is written by this script: it only posts the form and navigates.
const PAGE_SCRIPT = `
const status = document.getElementById('login-status');
const say = (text) => { if (status) status.textContent = text; };
const form = document.getElementById('login-form');
if (form) form.addEventListener('submit', async (event) => {
  event.preventDefault();
  say('Logging in…');
  try {
    const response = await fetch('/login', {
      method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: form.elements.username.value, password: form.elements.password.value }),
    });
    if (response.ok) { location.assign('/'); return; }
    const body = await response.json().catch(() => ({}));
    say((body.error || 'login failed') + (body.code ? ' (' + body.code + ')' : ''));
  } catch { say('The balancer did not answer; try again.'); }
});
for (const [id, path] of [['logout', '/logout'], ['logout-everywhere', '/logout/everywhere']]) {
  const button = document.getElementById(id);
  if (button) button.addEventListener('click', async () => {
    try { await fetch(path, { method: 'POST', credentials: 'same-origin' }); location.assign('/'); }
    catch { say('The balancer did not answer; try again.'); }
  });
}
`;
