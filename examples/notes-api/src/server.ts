import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { createKeyfleet } from 'keyfleet';
import { createApp } from './app.js';
import { noteClaims, type NoteClaims } from './claims.js';
import { NotesStore } from './notes.js';
import { UserStore } from './users.js';

// Owns the process. keyfleet reads its own configuration from the environment (REDIS_URL,
// KEYRING_MASTER_KEY or KEYRING_MASTER_KEY_FILE, NODE_ID...); the app adds USERS_FILE and PORT.

const kf = createKeyfleet<NoteClaims>({ claims: noteClaims });
// Started before the first `await`. createKeyfleet() opens keyfleet's Redis connections at
// once, and start() subscribes to the ring's channel: called while a connection is between
// ioredis's `connect` and `ready` (what awaiting anything first makes likely), that
// subscription is lost without an error, and the node then learns of rotations and
// revocations from its periodic reload only, seconds late. Called synchronously, the
// subscription waits in ioredis's offline queue and is sent in order.
const started = kf.start();
started.catch(() => undefined); // awaited below, where a failure ends the process
const users = await UserStore.fromFile(process.env.USERS_FILE || fileURLToPath(new URL('../users.json', import.meta.url)));
const redisUrl = process.env.NOTES_REDIS_URL || process.env.REDIS_URL;
if (!redisUrl) throw new Error('NOTES_REDIS_URL or REDIS_URL: where the notes are kept (redis://user:pass@host:6379/0)');
// The app's own connection for its own data; a command fails after 2 s instead of queueing.
const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, commandTimeout: 2_000, connectionName: `notes-api:${kf.nodeId}` });
redis.on('error', (error: Error) => kf.log.debug({ err: error.message }, 'notes redis connection error'));

const app = createApp({ kf, users, notes: new NotesStore(redis) });
await started;
const server = app.listen(Number(process.env.PORT || 3000));
server.on('close', () => redis.disconnect());
// Graceful shutdown on SIGTERM/SIGINT: /healthz fails first, in-flight requests finish, then keyfleet stops.
await kf.serve(server);
kf.log.info({ users: users.size, port: server.address() }, 'notes-api listening');
