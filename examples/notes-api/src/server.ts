import { fileURLToPath } from 'node:url';
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
// The notes live in keyfleet's Redis, on its connection (kf.redis: a command fails within ~2 s
// while Redis is away, instead of queueing; kf.stop() closes it).
const app = createApp({ kf, users, notes: new NotesStore(kf.redis) });
await started;
const server = app.listen(Number(process.env.PORT || 3000));
// Graceful shutdown on SIGTERM/SIGINT: /healthz fails first, in-flight requests finish, then keyfleet stops.
await kf.serve(server);
kf.log.info({ users: users.size, port: server.address() }, 'notes-api listening');
