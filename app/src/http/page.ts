// The page for people: which node served it, a login form, and who you are on each reload.
// Plain HTML and a few lines of script; every value shown comes from the JSON API.
const escape = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

export function renderPage(nodeId: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>keyfleet · ${escape(nodeId)}</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; color: #1d232a; }
  .node { font: 600 1.4rem ui-monospace, monospace; background: #eef4ff; padding: .2rem .5rem; border-radius: .3rem; }
  form { display: grid; gap: .5rem; max-width: 20rem; }
  output { display: block; margin-top: 1rem; white-space: pre-wrap; font-family: ui-monospace, monospace; }
</style>
</head>
<body>
<h1>keyfleet</h1>
<p>This page was served by <span class="node" id="node">${escape(nodeId)}</span>. Reload: the balancer sends you to the next node, and your login follows you.</p>
<section id="login">
  <h2>Log in</h2>
  <form id="login-form">
    <label>Username <input name="username" autocomplete="username" placeholder="demo" required></label>
    <label>Password <input name="password" type="password" autocomplete="current-password" placeholder="demo-password" required></label>
    <button type="submit">Log in</button>
  </form>
</section>
<section id="me" hidden>
  <h2>You</h2>
  <p>Logged in as <strong id="user"></strong> via <strong id="via"></strong>; this request: <span id="me-node"></span>.</p>
  <p>Visits in this session: <strong id="visits"></strong>; nodes seen: <span id="seen"></span>.</p>
  <button id="logout">Log out</button>
</section>
<output id="status" role="status"></output>
<script>
const $ = (id) => document.getElementById(id);
async function refresh() {
  const response = await fetch('/me', { credentials: 'same-origin' });
  const body = await response.json();
  $('login').hidden = response.ok; $('me').hidden = !response.ok;
  if (!response.ok) return;
  $('user').textContent = body.user; $('via').textContent = body.via;
  $('me-node').textContent = body.node; $('visits').textContent = body.visits ?? '-';
  $('seen').textContent = (body.nodesSeen ?? []).join(', ');
}
$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch('/login', { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: form.get('username'), password: form.get('password') }) });
  const body = await response.json();
  $('status').textContent = response.ok ? 'Logged in on ' + body.node : body.error;
  refresh();
});
$('logout').addEventListener('click', async () => { await fetch('/logout', { method: 'POST' }); refresh(); });
refresh();
</script>
</body>
</html>
`;
}
