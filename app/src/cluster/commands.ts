import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redisKeys } from '../lib/redisKeys.js';

// Operators ask the primary to act (only it generates keys): the CLI pushes a command on a
// list, the primary pops it and streams progress and the result to a reply stream.

export type CommandRequest =
  | { action: 'rotate'; purposes: string[]; actor: string; confirmTimeoutMs?: number; now?: boolean }
  | { action: 'revoke'; kid: string; actor: string };

export type Command = CommandRequest & { id: string };

export type Reply =
  | { type: 'progress'; data: unknown }
  | { type: 'result'; data: unknown }
  | { type: 'error'; code: string; message: string };

const REPLY_TTL_S = 600;

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
        const message = JSON.parse(fields[1] ?? '{}') as Reply;
        yield message;
        if (message.type !== 'progress') return;
      }
    }
  }
}
