// Per-node figures for the dashboard, computed by the node itself from its own counters and
// carried in its heartbeat: the dashboard shows every node's figures without Prometheus.

/** What a node says about its traffic over the last few seconds. */
export interface NodeFigures {
  /** Credential verifications (token, `auth` cookie, session) per second. */
  verificationsPerSecond: number;
  /** Share of token and `auth` cookie verifications answered by the cache; null when none. */
  cacheHitRatio: number | null;
  /** The span, in ms, the figures were measured over. */
  windowMs: number;
}

interface Sample {
  at: number;
  verifications: number;
  cacheable: number;
  hits: number;
}

export const DEFAULT_RATE_WINDOW_MS = 10_000;

/**
 * Rates over a sliding window of cumulative counter samples: each call adds a sample and
 * answers with the change since the oldest sample still inside the window.
 */
export class RateWindow {
  private readonly samples: Sample[] = [];

  constructor(private readonly windowMs = DEFAULT_RATE_WINDOW_MS) {}

  sample(at: number, totals: { verifications: number; cacheable: number; hits: number }): NodeFigures {
    this.samples.push({ at, ...totals });
    // Keep the newest sample at or before the window's start, so the span covers the window.
    while (this.samples.length > 2 && this.samples[1]!.at <= at - this.windowMs) this.samples.shift();
    const first = this.samples[0]!;
    const spanMs = at - first.at;
    const verifications = totals.verifications - first.verifications;
    const cacheable = totals.cacheable - first.cacheable;
    const hits = totals.hits - first.hits;
    return {
      verificationsPerSecond: spanMs > 0 ? Math.round((verifications / spanMs) * 1000 * 100) / 100 : 0,
      cacheHitRatio: cacheable > 0 ? Math.round((hits / cacheable) * 1000) / 1000 : null,
      windowMs: spanMs,
    };
  }
}

/** Figures read back from a heartbeat (data from Redis): anything malformed is dropped. */
export function readFigures(value: unknown): NodeFigures | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { verificationsPerSecond, cacheHitRatio, windowMs } = value as Record<string, unknown>;
  const finite = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0;
  if (!finite(verificationsPerSecond) || !finite(windowMs)) return undefined;
  if (cacheHitRatio !== null && !(finite(cacheHitRatio) && cacheHitRatio <= 1)) return undefined;
  return { verificationsPerSecond, cacheHitRatio, windowMs };
}
