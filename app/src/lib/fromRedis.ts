import type { z } from 'zod';
import type { Logger } from './log.js';

// Whatever keyfleet reads back from Redis was written by whoever holds the nodes' password:
// it is parsed and checked against a schema, never cast. A malformed entry is skipped and
// logged by where it was found and why (a code), never by its content, which could hold
// secrets (a session, a refresh family). Never fatal.

/** Why an entry read from Redis was skipped. */
export type MalformedCode = 'ERR_NOT_JSON' | 'ERR_BAD_SHAPE';

export type Parsed<T> = { ok: true; value: T } | { ok: false; code: MalformedCode };

/** Parses `raw` as JSON and checks it against `schema`. */
export function parseStored<T>(schema: z.ZodType<T>, raw: string): Parsed<T> {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { ok: false, code: 'ERR_NOT_JSON' };
  }
  return checkStored(schema, value);
}

/** Checks an already parsed value (a stream entry's fields, say) against `schema`. */
export function checkStored<T>(schema: z.ZodType<T>, value: unknown): Parsed<T> {
  const parsed = schema.safeParse(value);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, code: 'ERR_BAD_SHAPE' };
}

const MALFORMED_LOG_INTERVAL_MS = 60_000;
const lastLogged = new Map<string, number>();

/**
 * Logs a skipped entry: `source` names where it was (a key or a channel, no content), `code`
 * why. At most once a minute per source and code, as what polls Redis would repeat it.
 */
export function reportMalformed(log: Logger | undefined, source: string, code: MalformedCode, extra: Record<string, unknown> = {}): void {
  if (!log) return;
  const key = `${source}\u0000${code}`;
  const now = Date.now();
  if (now - (lastLogged.get(key) ?? Number.NEGATIVE_INFINITY) < MALFORMED_LOG_INTERVAL_MS) return;
  lastLogged.set(key, now);
  if (lastLogged.size > 1_000) lastLogged.clear(); // bounded: sources come from Redis keys
  log.warn({ code, source, ...extra }, 'skipped a malformed entry read from Redis');
}
