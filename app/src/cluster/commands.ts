import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import { parseStored, type MalformedCode } from '../lib/fromRedis.js';
import type { Logger } from '../lib/log.js';
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

/** A command popped from the list, or why it is not one (not JSON, or not the shape). */
export function readCommand(raw: string): { ok: true; value: Command } | { ok: false; code: MalformedCode } {
  return parseStored(CommandSchema, raw);
}

/** A command popped from the list, or undefined when it is not one. */
export function parseCommand(raw: string): Command | undefined {
  const parsed = readCommand(raw);
  return parsed.ok ? parsed.value : undefined;
}

/** A reply read from the stream, or undefined when it is not one. */
export function parseReply(raw: string | undefined): Reply | undefined {
  const parsed = parseStored(ReplySchema, raw ?? '');
  return parsed.ok ? (parsed.value as Reply) : undefined;
}

/**
 * Where the primary takes operator commands from and answers them: a Redis list and reply
 * streams in a node (RedisCommandChannel), an array in unit tests.
 */
export interface CommandChannel {
  /** The next raw entry, unparsed (the primary checks it), or null after `timeoutMs` without one. */
  pop(timeoutMs: number): Promise<string | null>;
  reply(id: string, message: Reply): Promise<void>;
}

// Removes the command key only while it is not a list: a stream or string written there (by
// anyone with the password) would make every BLPOP fail and every operator's RPUSH too.
const REMOVE_IF_NOT_LIST = `local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'list' and kind ~= 'none' then redis.call('DEL', KEYS[1]); return kind end
return false`;

export class RedisCommandChannel implements CommandChannel {
  /**
   * @param blocking a connection of its own for the blocking pop
   * @param redis the shared connection, for replies
   */
  constructor(
    private readonly blocking: Redis,
    private readonly redis: Redis,
    private readonly log?: Logger,
  ) {}

  async pop(timeoutMs: number): Promise<string | null> {
    try {
      // BLPOP's timeout is in seconds (fractions allowed since Redis 6); 0 would block forever.
      const popped = await this.blocking.blpop(redisKeys.commands, Math.max(timeoutMs, 1) / 1000);
      return popped ? popped[1] : null;
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('WRONGTYPE')) throw error;
      const kind = await this.redis.eval(REMOVE_IF_NOT_LIST, 1, redisKeys.commands);
      if (kind) this.log?.warn({ code: 'ERR_COMMANDS_WRONGTYPE', key: redisKeys.commands, type: kind }, 'removed a non-list value at the operators\' command key');
      return null;
    }
  }

  reply(id: string, message: Reply): Promise<void> {
    return reply(this.redis, id, message);
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
