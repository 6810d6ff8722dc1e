// Small HTTP helpers for tests that talk to the balancer.

export interface Reply<T = any> {
  status: number;
  node: string | null;
  body: T;
  headers: Headers;
}

export async function request<T = any>(url: string, init: RequestInit = {}): Promise<Reply<T>> {
  const response = await fetch(url, { ...init, redirect: 'manual' });
  const text = await response.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, node: response.headers.get('x-node-id'), body, headers: response.headers };
}

export interface LoginResult {
  token: string;
  authCookie: string;
  sidCookie: string;
  node: string;
}

/** POST /login with a JSON body (an object, or raw text for malformed bodies). */
export function postLogin(baseUrl: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return request(`${baseUrl}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

export async function login(baseUrl: string, username = 'demo', password = 'demo-password'): Promise<LoginResult> {
  let reply = await postLogin(baseUrl, { username, password });
  // A node that cannot store the session right now (cut off, just reconnected, its Redis
  // connection being remade) logs the user in without one and hands out no sid; the next
  // login lands on another node. A few tries, then it is a failure like any other.
  for (let attempt = 1; attempt < 5 && reply.status === 200 && reply.body?.session === false; attempt++) {
    reply = await postLogin(baseUrl, { username, password });
  }
  if (reply.status !== 200) throw new Error(`login failed: ${reply.status} ${JSON.stringify(reply.body)}`);
  const cookies = reply.headers.getSetCookie();
  const pick = (name: string) => {
    const found = cookies.find((cookie) => cookie.startsWith(`${name}=`));
    if (!found) throw new Error(`login set no ${name} cookie`);
    return found.split(';')[0]!;
  };
  return { token: reply.body.token, authCookie: pick('auth'), sidCookie: pick('sid'), node: reply.body.node };
}

export type CredentialKind = 'token' | 'cookie' | 'session';

/** The request headers that present one kind of credential from a login. */
export function credentialHeaders(kind: CredentialKind, who: LoginResult): Record<string, string> {
  if (kind === 'token') return { authorization: `Bearer ${who.token}` };
  return { cookie: kind === 'cookie' ? who.authCookie : who.sidCookie };
}

export interface CrossNodeResult {
  accepted: number;
  rejected: number;
  /** node -> [accepted, rejected] */
  byNode: Map<string, [number, number]>;
}

/**
 * Presents one credential `rounds` times through the balancer and counts, per node, what
 * was accepted. The same probe runs against the shared ring (everything accepted) and the
 * per-node farm (most refused), so a suite that could not tell them apart would fail.
 */
export async function probeAcrossNodes(baseUrl: string, kind: CredentialKind, who: LoginResult, rounds: number): Promise<CrossNodeResult> {
  const result: CrossNodeResult = { accepted: 0, rejected: 0, byNode: new Map() };
  for (let i = 0; i < rounds; i++) {
    const reply = await request(`${baseUrl}/me`, { headers: credentialHeaders(kind, who) });
    const ok = reply.status === 200 && reply.body.user === 'demo' && reply.body.via === kind;
    if (!ok && reply.status !== 401) throw new Error(`unexpected ${reply.status} from ${reply.node}: ${JSON.stringify(reply.body)}`);
    const counts = result.byNode.get(reply.node!) ?? [0, 0];
    counts[ok ? 0 : 1]++;
    result.byNode.set(reply.node!, counts);
    if (ok) result.accepted++;
    else result.rejected++;
  }
  return result;
}
