import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../support/cluster.js';
import { login, probeAcrossNodes, request, type LoginResult } from '../support/http.js';

// The negative control: KEYRING_MODE=local is the web farm keyfleet ends, each node with
// keys of its own. The same probe that proves the shared ring (cluster.test.ts) must see
// this farm fail, or the suite could not tell a working cluster from a broken one.

const ROUNDS = 30;

describe('the broken farm (KEYRING_MODE=local): each node with its own keys', () => {
  let cluster: Cluster;
  let session: LoginResult;

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3, env: { KEYRING_MODE: 'local' } });
    session = await login(cluster.url);
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  for (const via of ['token', 'cookie', 'session'] as const) {
    it(`a ${via} minted on one node is refused by the others`, async () => {
      const result = await probeAcrossNodes(cluster.url, via, session, ROUNDS);
      console.log(`[figures] broken farm, ${via}: ${result.accepted} accepted, ${result.rejected} refused of ${ROUNDS}`);
      expect(result.byNode.size).toBe(3);
      // Accepted only by the node that minted it; refused by every other node.
      for (const [node, [accepted, rejected]] of result.byNode) {
        if (node === session.node) expect(rejected, node).toBe(0);
        else expect(accepted, node).toBe(0);
      }
      expect(result.rejected).toBeGreaterThan(0);
    });
  }

  it('makes a login flap as the balancer moves the user', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) {
      const reply = await request(`${cluster.url}/me`, { headers: { cookie: session.authCookie } });
      seen.push(reply.status === 200 ? 'in' : 'out');
    }
    expect(seen).toContain('in');
    expect(seen).toContain('out');
  });

  it('publishes a different JWKS on each node', async () => {
    const kids = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const reply = await request(`${cluster.url}/.well-known/jwks.json`);
      kids.add(reply.body.keys[0].kid);
    }
    expect(kids.size).toBe(3);
  });
});
