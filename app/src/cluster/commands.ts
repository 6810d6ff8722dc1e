import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { redisKeys } from '../lib/redisKeys.js';

// Operators ask the primary to act (only it generates keys): the CLI pushes a command on a
// list, the primary pops it and streams progress and the result to a reply stream.

export type Reply =
  | { type: 'progress'; data: unknown }
  | { type: 'result'; data: unknown }
  | { type: 'error'; code: string; message: string };

const REPLY_TTL_S = 600;

// What the primary pops and the CLI reads come from Redis, which others can write to: parsed
// and checked, never cast. A malformed entry is skipped (and logged by the caller).
const CommandSchema = z.discriminatedUnion('action', [
  z.object({
    action: z.literal('rotate'),
    id: z.string().max(64),
    purposes: z.array(z.string().max(16)).max(8),
    actor: z.string().max(256),
    confirmTimeoutMs: z.number().int().positive().max(3_600_000).optional(),
    /** An emergency rotation: a fresh key at once, not the pre-published one. */
    now: z.boolean().optional(),
  }),
  z.object({ action: z.literal('revoke'), id: z.string().max(64), kid: z.string().max(128), actor: z.string().max(256) }),
]);

// The schema is the one definition of a command: a field added here is a field the primary sees.
export type Command = z.infer<typeof CommandSchema>;
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
export type CommandRequest = WithoutId<Command>;

const ReplySchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('progress'), data: z.unknown() }),
  z.object({ type: z.literal('result'), data: z.unknown() }),
  z.object({ type: z.literal('error'), code: z.string(), message: z.string() }),
]);

/** A command popped from the list, or undefined when it is not one (not JSON, or not the shape). */
export function parseCommand(raw: string): Command | undefined {
  try {
    const parsed = CommandSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function parseReply(raw: string | undefined): Reply | undefined {
  try {
    const parsed = ReplySchema.safeParse(JSON.parse(raw ?? ''));
    return parsed.success ? (parsed.data as Reply) : undefined;
  } catch {
    return undefined;
  }
}

export async function sendCommand(redis: Redis, command: CommandRequest): Promise<string> {
  const id = randomUUID();
  await redis.rpush(redisKeys.commands, JSON.stringify({ ...command, id }));
  return id;
}

export async function reply(redis: Redis, id: string, message: Reply): Promise<void> {
  const key = redisKeys.reply(id);
  await redis.multi().xadd(key, '*', 'm', JSON.stringify(message)).expire(key, REPLY_TTL_S).exec();
}

/** Yields replies to command `id` until a result or an error, or until `timeoutMs` of silence. */
export async function* readReplies(redis: Redis, id: string, timeoutMs: number): AsyncGenerator<Reply> {
  let last = '0';
  for (;;) {
    const batch = (await redis.xread('BLOCK', timeoutMs, 'STREAMS', redisKeys.reply(id), last)) as
      | [string, [string, string[]][]][]
      | null;
    if (!batch) return;
    for (const [, entries] of batch) {
      for (const [entryId, fields] of entries) {
        last = entryId;
        const message = parseReply(fields[1]);
        if (!message) continue; // not a reply of ours: skipped
        yield message;
        if (message.type !== 'progress') return;
      }
    }
  }
}
