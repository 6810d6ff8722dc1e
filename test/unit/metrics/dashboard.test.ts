import { describe, expect, it } from 'vitest';
import type { NodeBeat } from '../../../app/src/cluster/heartbeat.js';
import { buildDashboard } from '../../../app/src/http/dashboard.js';
import { renderDashboardPage } from '../../../app/src/http/dashboardPage.js';
import { T0 } from '../support/ring.js';

// Point 6 of issue 15: the dashboard's per-node figures come from each node's heartbeat.

const beat = (id: string, figures: unknown): NodeBeat =>
  ({ id, role: 'auto', primary: false, ringVersion: 1, startedAt: T0, at: T0, draining: false, figures }) as NodeBeat;

describe('the dashboard\'s per-node figures', () => {
  it('shows each node\'s verifications per second and cache hit ratio from its heartbeat', () => {
    const view = buildDashboard({
      now: T0,
      servedBy: 'node-1',
      heartbeatIntervalMs: 1_000,
      redis: true,
      ring: null,
      ringSource: 'none',
      primary: null,
      audit: [],
      nodes: [
        beat('node-1', { verificationsPerSecond: 120.5, cacheHitRatio: 0.93, windowMs: 10_000 }),
        beat('node-2', { verificationsPerSecond: 0, cacheHitRatio: null, windowMs: 10_000 }),
        // Bad data read from Redis (an older node, or tampering): shown as unknown, never thrown.
        beat('node-3', { verificationsPerSecond: 'lots', cacheHitRatio: 7, windowMs: 1 }),
        beat('node-4', undefined),
      ],
    });
    expect(view.nodes.map((n) => [n.id, n.verificationsPerSecond, n.cacheHitRatio])).toEqual([
      ['node-1', 120.5, 0.93],
      ['node-2', 0, null],
      ['node-3', null, null],
      ['node-4', null, null],
    ]);
  });

  it('has a column for each figure on the page', () => {
    const html = renderDashboardPage({ nodeId: 'node-1', mode: 'public', nonce: 'n' });
    expect(html).toContain('<th scope="col">Verifications/s</th><th scope="col">Cache hits</th>');
    expect(html).toContain("'data-figure': 'cache-hits'");
  });
});
