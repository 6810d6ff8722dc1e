import type { DashboardMode } from './dashboard.js';
import { escapeHtml as e } from './html.js';

// The dashboard's HTML: a static shell that holds no data. Its script polls
// GET /dashboard/data about once a second and builds the tables with DOM calls
// (textContent only, never innerHTML), so nothing it shows can inject markup.

export interface DashboardPageOptions {
  nodeId: string;
  mode: DashboardMode;
  nonce: string;
}

export function renderDashboardPage({ nodeId, mode, nonce }: DashboardPageOptions): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>keyfleet dashboard</title>
<link rel="icon" href="data:,">
<style nonce="${e(nonce)}">
${DASHBOARD_CSS}
</style>
</head>
<body data-access="${e(mode)}" data-node="${e(nodeId)}">
<header class="top">
  <span class="brand">keyfleet</span> <span class="tagline">dashboard · read-only</span>
  <span class="live" id="live" data-state="connecting">connecting…</span>
  <a class="back" href="/">the page</a>
</header>
<main>
<section class="card" id="access" hidden aria-labelledby="access-title">
  <h1 id="access-title">This dashboard needs a login</h1>
  <p id="access-message"></p>
  <form id="token-form" hidden>
    <label for="token-input">Dashboard token</label>
    <input id="token-input" type="password" autocomplete="off" spellcheck="false" required>
    <button type="submit">Open the dashboard</button>
    <p class="hint">Kept in this tab only (sessionStorage) and sent as <code>Authorization: Bearer</code>.</p>
  </form>
</section>
<div id="content" hidden>
  <h1 class="visually-hidden">keyfleet dashboard</h1>
  <section class="summary" aria-label="Summary">
    <div class="stat"><span class="label">Ring version</span><span class="value" id="ring-version">–</span></div>
    <div class="stat"><span class="label">Primary (lease)</span><span class="value" id="primary">–</span></div>
    <div class="stat"><span class="label">Live nodes</span><span class="value" id="node-count">–</span></div>
    <div class="stat"><span class="label">This answer from</span><span class="value" id="served-by">–</span></div>
  </section>
  <p class="warning" id="warning" role="alert" hidden></p>
  <section aria-labelledby="nodes-title">
    <h2 id="nodes-title">Nodes</h2>
    <div class="scroll"><table id="nodes">
      <thead><tr><th scope="col">Node</th><th scope="col">Role</th><th scope="col">Ring loaded</th><th scope="col">Heartbeat</th><th scope="col">Up</th><th scope="col">Verifications/s</th><th scope="col">Cache hits</th><th scope="col">Status</th></tr></thead>
      <tbody></tbody>
    </table></div>
  </section>
  <section aria-labelledby="keys-title">
    <h2 id="keys-title">Key ring</h2>
    <p class="legend" aria-hidden="true"><span class="swatch staged"></span>staged <span class="swatch active"></span>active <span class="swatch retired"></span>retired <span class="swatch revoked"></span>revoked <span class="muted">· each bar runs from the oldest key's creation to now</span></p>
    <div id="purposes"></div>
  </section>
  <section aria-labelledby="audit-title">
    <h2 id="audit-title">Recent audit events</h2>
    <div class="scroll"><table id="audit">
      <thead><tr><th scope="col">Time</th><th scope="col">Ring</th><th scope="col">Action</th><th scope="col">Purpose</th><th scope="col">Key</th><th scope="col">By</th><th scope="col">Detail</th></tr></thead>
      <tbody></tbody>
    </table></div>
  </section>
</div>
<noscript><p class="card">The dashboard updates itself with JavaScript; <a href="/dashboard/data">/dashboard/data</a> has the same data as JSON.</p></noscript>
</main>
<script nonce="${e(nonce)}">
${DASHBOARD_SCRIPT}
</script>
</body>
</html>
`;
}

const DASHBOARD_CSS = `
  :root { --ink: #1b2430; --muted: #556070; --line: #d9dee5; --accent: #1f5fbf;
          --staged: #d99a00; --active: #1d8a4e; --retired: #8a96a8; --revoked: #c62828; color-scheme: light; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: #f5f7fa; }
  .top { background: var(--ink); color: #fff; padding: .6rem 1.25rem; display: flex; gap: .75rem; align-items: baseline; flex-wrap: wrap; }
  .brand { font-weight: 700; letter-spacing: .02em; }
  .tagline { color: #c6cfdb; font-size: .9rem; }
  .live { margin-left: auto; font-size: .85rem; color: #c6cfdb; }
  .live::before { content: ""; display: inline-block; width: .6rem; height: .6rem; border-radius: 50%; margin-right: .4rem; background: #8a96a8; }
  .live[data-state="live"]::before { background: #3ccf7a; }
  .live[data-state="stale"]::before { background: #f0a020; }
  .back { color: #c6cfdb; font-size: .85rem; }
  main { max-width: 78rem; margin: 0 auto; padding: 1.25rem; }
  h1 { font-size: 1.3rem; margin: 0 0 .5rem; }
  h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
  h3 { font-size: 1rem; margin: 0 0 .4rem; }
  .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
  .card { background: #fff; border: 1px solid var(--line); border-radius: .6rem; padding: 1.25rem 1.5rem; }
  form { display: grid; gap: .4rem; max-width: 24rem; }
  input { font: inherit; padding: .45rem .6rem; border: 1px solid #9aa5b4; border-radius: .35rem; }
  button { font: inherit; font-weight: 600; border: 0; border-radius: .35rem; padding: .5rem 1rem; background: var(--accent); color: #fff; cursor: pointer; justify-self: start; }
  button:focus-visible, input:focus-visible, a:focus-visible { outline: 3px solid #f2b705; outline-offset: 2px; }
  .hint, .muted { color: var(--muted); font-size: .85rem; }
  .summary { display: grid; grid-template-columns: repeat(auto-fit, minmax(11rem, 1fr)); gap: .75rem; }
  .stat { background: #fff; border: 1px solid var(--line); border-radius: .6rem; padding: .6rem .9rem; }
  .stat .label { display: block; color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
  .stat .value { font: 700 1.35rem ui-monospace, "DejaVu Sans Mono", monospace; }
  .warning { background: #fff4e0; border: 1px solid #e5b567; border-radius: .35rem; padding: .5rem .75rem; }
  .scroll { overflow-x: auto; }
  table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); border-radius: .6rem; }
  th, td { text-align: left; padding: .4rem .65rem; border-bottom: 1px solid #edf0f4; white-space: nowrap; vertical-align: middle; }
  th { font-size: .8rem; color: var(--muted); font-weight: 600; background: #fafbfc; }
  tbody tr:last-child td { border-bottom: 0; }
  code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .85rem; }
  .chip { font: 600 .85rem ui-monospace, "DejaVu Sans Mono", monospace; padding: .05rem .45rem; border-radius: 1rem;
          background: hsl(var(--hue, 210) 75% 92%); color: hsl(var(--hue, 210) 70% 22%); border: 1px solid hsl(var(--hue, 210) 55% 60%); }
  .badge { display: inline-block; font-size: .75rem; font-weight: 700; padding: .05rem .45rem; border-radius: .3rem; text-transform: uppercase; letter-spacing: .03em; }
  .badge.primary { background: #1f5fbf; color: #fff; }
  .badge.secondary { background: #e6eaf0; color: var(--ink); }
  .badge.staged { background: #fff1cc; color: #6b4a00; }
  .badge.active { background: #d8f3e3; color: #0f5130; }
  .badge.retired { background: #e6eaf0; color: #3b4656; }
  .badge.revoked { background: #fde0e0; color: #8a1c1c; }
  .badge.warn { background: #fff1cc; color: #6b4a00; }
  .badge.self { background: #ede7fb; color: #3d2a80; }
  .purposes { display: grid; gap: 1rem; }
  .purpose { margin-bottom: 1rem; }
  .purpose-head { display: flex; gap: .75rem; align-items: baseline; flex-wrap: wrap; margin-bottom: .4rem; }
  .purpose-head h3 { margin: 0; }
  table.keys { table-layout: fixed; min-width: 60rem; }
  table.keys .c0 { width: 24%; } table.keys .c1 { width: 8%; } table.keys .c7 { width: 28%; }
  table.keys td { overflow: hidden; text-overflow: ellipsis; }
  .track { position: relative; height: .8rem; background: #f0f2f5; border-radius: .4rem; overflow: hidden; }
  .seg { position: absolute; top: 0; bottom: 0; min-width: 2px; }
  .seg.staged, .swatch.staged { background: var(--staged); }
  .seg.active, .swatch.active { background: var(--active); }
  .seg.retired, .swatch.retired { background: var(--retired); }
  .seg.revoked, .swatch.revoked { background: var(--revoked); }
  .swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: .2rem; margin: 0 .25rem 0 .6rem; vertical-align: -1px; }
  .legend { margin: 0 0 .6rem; font-size: .85rem; }
  .legend .swatch:first-child { margin-left: 0; }
  tr.late td.age { color: #8a1c1c; font-weight: 700; }
`;

// Builds every table from the JSON with createElement/textContent, so values are never
// parsed as HTML. One poll at a time; slower while the tab is hidden.
const DASHBOARD_SCRIPT = `
const $ = (id) => document.getElementById(id);
const mode = document.body.dataset.access;
const TOKEN_KEY = 'keyfleet.dashboardToken';
const el = (tag, props = {}, children = []) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key === 'hue') { if (value !== undefined) node.style.setProperty('--hue', String(value)); }
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
};
const two = (n) => String(n).padStart(2, '0');
function time(t) {
  if (t === null || t === undefined) return '–';
  const d = new Date(t), now = new Date();
  const hms = two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
  return d.toDateString() === now.toDateString() ? hms : d.toISOString().slice(0, 10) + ' ' + hms;
}
function span(ms) {
  const s = Math.floor(ms / 1000);
  if (ms < 10000) return (ms / 1000).toFixed(1) + ' s';
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + two(s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + two(Math.floor(s / 60) % 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor(s / 3600) % 24 + 'h';
}
const chip = (id, hue) => el('span', { class: 'chip', hue, text: id });
const badge = (kind, text) => el('span', { class: 'badge ' + kind, text: text || kind });
const cell = (content, props = {}) => el('td', props, [typeof content === 'string' ? document.createTextNode(content) : content]);
const hueOf = (data, id) => (data.nodes.find((n) => n.id === id) || {}).hue;

function renderNodes(data) {
  const rows = data.nodes.map((n) => el('tr', { 'data-node': n.id, class: n.late ? 'late' : '' }, [
    cell(chip(n.id, n.hue)),
    cell(el('span', {}, [badge(n.primary ? 'primary' : 'secondary'), el('span', { class: 'muted', text: ' NODE_ROLE=' + n.role })])),
    cell(el('span', {}, [el('span', { class: 'mono', 'data-ring-version': String(n.ringVersion), text: 'v' + n.ringVersion }), n.behind ? badge('warn', 'behind') : null])),
    cell(span(n.heartbeatAgeMs) + ' ago', { class: 'age' }),
    cell(span(n.uptimeMs)),
    cell(n.verificationsPerSecond === null ? '–' : String(n.verificationsPerSecond), { class: 'mono', 'data-figure': 'verifications' }),
    cell(n.cacheHitRatio === null ? '–' : Math.round(n.cacheHitRatio * 100) + ' %', { class: 'mono', 'data-figure': 'cache-hits' }),
    cell(el('span', {}, [n.draining ? badge('warn', 'draining') : null, n.self ? badge('self', 'this answer') : null])),
  ]));
  $('nodes').tBodies[0].replaceChildren(...rows);
}

function renderPurposes(data) {
  const blocks = data.purposes.map((p) => {
    // The next signing key: staged, and in the JWKS since its creation (pre-published).
    const next = p.purpose === 'sign' ? p.keys.find((k) => k.state === 'staged') : undefined;
    const rows = p.keys.map((k) => el('tr', { 'data-kid': k.kid, 'data-state': k.state }, [
      cell(el('code', { text: k.kid })),
      cell(badge(k.state, next && k.kid === next.kid ? 'next' : k.state)),
      cell(time(k.createdAt)),
      cell(time(k.activatedAt)),
      cell(time(k.retiredAt)),
      cell(time(k.revokedAt)),
      cell(time(k.deleteAfter)),
      cell(el('div', { class: 'track', role: 'img', 'aria-label': k.segments.map((s) => s.state + ' from ' + time(s.from)).join(', ') },
        k.segments.map((s) => {
          const seg = el('span', { class: 'seg ' + s.state, title: s.state + ': ' + time(s.from) + ' to ' + time(s.to) });
          seg.style.left = s.left + '%'; seg.style.width = s.width + '%';
          return seg;
        })), { class: 'life' }),
    ]));
    return el('article', { class: 'purpose', 'data-purpose': p.purpose, 'aria-labelledby': 'purpose-' + p.purpose }, [
      el('div', { class: 'purpose-head' }, [
        el('h3', { id: 'purpose-' + p.purpose, text: p.purpose }),
        el('span', { class: 'muted', text: p.alg }),
        el('span', { class: 'muted', text: 'active:' }),
        el('code', { id: 'active-' + p.purpose, text: p.active || 'none' }),
        ...(next ? [
          el('span', { class: 'muted', text: 'next:' }),
          el('code', { id: 'next-' + p.purpose, text: next.kid }),
          el('span', { class: 'muted', id: 'next-published-' + p.purpose, text: 'published ' + time(next.createdAt) + ' (' + span(data.at - next.createdAt) + ' ago)' }),
        ] : []),
      ]),
      el('div', { class: 'scroll' }, [el('table', { class: 'keys' }, [
        el('thead', {}, [el('tr', {}, ['Key', 'State', 'Created', 'Activated', 'Retired', 'Revoked', 'Delete after', 'Life'].map((h, i) => el('th', { scope: 'col', class: 'c' + i, text: h })))]),
        el('tbody', {}, rows),
      ])]),
    ]);
  });
  $('purposes').replaceChildren(...blocks);
}

function renderAudit(data) {
  const rows = data.audit.map((a) => el('tr', { 'data-action': a.action }, [
    cell(time(a.at)),
    cell('v' + a.version, { class: 'mono' }),
    cell(a.action),
    cell(a.purpose || ''),
    cell(a.kid ? el('code', { text: a.kid }) : ''),
    cell(a.actor),
    cell(a.detail || ''),
  ]));
  $('audit').tBodies[0].replaceChildren(...rows);
}

function render(data) {
  $('ring-version').textContent = data.ring.version === null ? 'none' : 'v' + data.ring.version;
  $('primary').replaceChildren(data.primary ? chip(data.primary, hueOf(data, data.primary)) : document.createTextNode('none'));
  $('node-count').textContent = String(data.nodes.length);
  $('served-by').replaceChildren(chip(data.servedBy, data.servedByHue));
  const warnings = [];
  if (!data.redis) warnings.push('Redis did not answer every read: what is shown may be partial.');
  if (data.ring.source === 'node') warnings.push('Showing the key ring held by ' + data.servedBy + ', not the one in Redis.');
  if (!data.primary) warnings.push('No node holds the primary lease: nothing can rotate until one does.');
  $('warning').hidden = warnings.length === 0;
  $('warning').textContent = warnings.join(' ');
  renderNodes(data); renderPurposes(data); renderAudit(data);
}

function setLive(state, text) { $('live').dataset.state = state; $('live').textContent = text; }

function showAccess(body) {
  $('content').hidden = true; $('access').hidden = false;
  const tokenMode = mode === 'token';
  $('access-title').textContent = tokenMode ? 'This dashboard needs its token' : 'This dashboard needs a login';
  $('token-form').hidden = !tokenMode;
  const message = $('access-message');
  if (tokenMode) {
    message.textContent = sessionStorage.getItem(TOKEN_KEY) ? 'That token was not accepted (' + body.code + ').' : 'Enter the DASHBOARD_TOKEN this cluster was started with.';
  } else {
    message.replaceChildren('Log in on ', el('a', { href: '/', text: 'the page' }), ' first, then come back: any account in USERS may look (' + (body.code || 'unauthorized') + ').');
  }
  setLive('stale', 'not signed in');
}

let timer = 0, busy = false;
function schedule(ms) { clearTimeout(timer); timer = setTimeout(poll, ms); }
async function poll() {
  if (busy) return;
  busy = true;
  let waitMs = 1000;
  try {
    const headers = { accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (mode === 'token' && token) headers.authorization = 'Bearer ' + token;
    const response = await fetch('/dashboard/data', { headers, credentials: 'same-origin', cache: 'no-store' });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      $('access').hidden = true; $('content').hidden = false;
      render(body);
      setLive('live', 'live · updated ' + time(body.at));
    } else if (response.status === 401) {
      showAccess(body);
      waitMs = mode === 'token' ? 60000 : 2000;
    } else {
      setLive('stale', 'reconnecting… (' + (body.code || response.status) + ')');
    }
  } catch {
    setLive('stale', 'reconnecting… (the balancer did not answer)');
  } finally {
    busy = false;
    schedule(document.hidden ? Math.max(waitMs, 5000) : waitMs);
  }
}
$('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token-input').value.trim());
  $('token-input').value = '';
  schedule(0);
});
document.addEventListener('visibilitychange', () => { if (!document.hidden) schedule(0); });
poll();
`;
