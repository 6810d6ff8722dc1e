import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, TLS_DIR } from '../support/cluster.js';
import { postLogin, request } from '../support/http.js';

// TLS at the balancer, as production runs it: HAProxy terminates HTTPS (HTTP/2 and 1.1)
// with the certificate bootstrap made; nodes learn the scheme from X-Forwarded-Proto.

const ca = readFileSync(`${TLS_DIR}/cert.pem`);
const run = promisify(execFile);

interface TlsReply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

function https(url: string, { method = 'GET', headers = {}, body }: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  return new Promise<TlsReply>((resolve, reject) => {
    const req = httpsRequest(url, { method, headers, ca }, (res) => {
      let text = '';
      res.on('data', (chunk) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text.startsWith('{') ? JSON.parse(text) : text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('HTTPS at the balancer', () => {
  let cluster: Cluster;

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3 });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('serves every node over HTTPS with the generated certificate (curl --cacert)', async () => {
    const nodes = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const { stdout } = await run('curl', ['-sS', '--fail', '--cacert', `${TLS_DIR}/cert.pem`, '-D', '-', '-o', '/dev/null', `${cluster.tlsUrl}/healthz`]);
      nodes.add(/^x-node-id: (\S+)/im.exec(stdout)![1]!);
      expect(stdout).toMatch(/^strict-transport-security: max-age=31536000/im);
    }
    expect(nodes.size).toBe(3);
  });

  it('refuses a client that does not trust the certificate', async () => {
    await expect(run('curl', ['-sS', '--fail', `${cluster.tlsUrl}/healthz`])).rejects.toMatchObject({ code: 60 });
  });

  it('marks the sid and auth cookies Secure over HTTPS, and a login works across nodes', async () => {
    const login = await https(`${cluster.tlsUrl}/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'demo', password: 'demo-password' }),
    });
    expect(login.status).toBe(200);
    const cookies = login.headers['set-cookie'] as string[];
    expect(cookies).toHaveLength(2);
    for (const cookie of cookies) expect(cookie).toMatch(/; Secure/);
    const jar = cookies.map((cookie) => cookie.split(';')[0]).join('; ');
    const nodes = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const me = await https(`${cluster.tlsUrl}/me`, { headers: { cookie: jar } });
      expect(me.status).toBe(200);
      nodes.add(me.headers['x-node-id'] as string);
    }
    expect(nodes.size).toBe(3);
    // The same login over plain HTTP gets no Secure flag: nodes trust the balancer's header.
    const plain = await postLogin(cluster.url, { username: 'demo', password: 'demo-password' }, { 'x-forwarded-proto': 'https' });
    for (const cookie of plain.headers.getSetCookie()) expect(cookie).not.toMatch(/Secure/);
    expect(plain.headers.get('strict-transport-security')).toBeNull();
  });

  it('speaks HTTP/2 to clients', async () => {
    const session = connect(cluster.tlsUrl, { ca });
    try {
      const { status, node } = await new Promise<{ status: number; node: string }>((resolve, reject) => {
        const stream = session.request({ ':path': '/healthz' });
        stream.on('response', (headers) => {
          stream.resume();
          stream.on('end', () => resolve({ status: Number(headers[':status']), node: String(headers['x-node-id']) }));
        });
        stream.on('error', reject);
        stream.end();
      });
      expect(status).toBe(200);
      expect(node).toMatch(/^node-\d$/);
      expect(session.alpnProtocol).toBe('h2');
    } finally {
      session.close();
    }
  });

  it('keeps plain HTTP for the demo unless the redirect is switched on', async () => {
    expect((await request(`${cluster.url}/healthz`)).status).toBe(200);
  });
});

describe('HTTPS redirect', () => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 1, balancerEnv: { KEYFLEET_REDIRECT_HTTPS: '1' } });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('sends plain HTTP to HTTPS when KEYFLEET_REDIRECT_HTTPS=1', async () => {
    const reply = await request(`${cluster.url}/me`);
    expect(reply.status).toBe(308);
    expect(reply.headers.get('location')).toMatch(/^https:\/\/[^/]+\/me$/);
  });
});
