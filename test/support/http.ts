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

export async function login(baseUrl: string, username = 'demo', password = 'demo-password'): Promise<LoginResult> {
  const response = await fetch(`${baseUrl}/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  if (response.status !== 200) throw new Error(`login failed: ${response.status} ${await response.text()}`);
  const body = (await response.json()) as { token: string; node: string };
  const cookies = response.headers.getSetCookie();
  const pick = (name: string) => {
    const found = cookies.find((cookie) => cookie.startsWith(`${name}=`));
    if (!found) throw new Error(`login set no ${name} cookie`);
    return found.split(';')[0]!;
  };
  return { token: body.token, authCookie: pick('auth'), sidCookie: pick('sid'), node: body.node };
}

export type CredentialKind = 'token' | 'cookie' | 'session';

/** The request headers that present one kind of credential from a login. */
export function credentialHeaders(kind: CredentialKind, who: LoginResult): Record<string, string> {
  if (kind === 'token') return { authorization: `Bearer ${who.token}` };
  return { cookie: kind === 'cookie' ? who.authCookie : who.sidCookie };
}
