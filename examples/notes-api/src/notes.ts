import { randomUUID } from 'node:crypto';
import { appKey, type Keyfleet } from 'keyfleet';

// Notes per user, one Redis hash each (id -> JSON), on keyfleet's own connection (kf.redis).
// The kit's Redis user may only touch keys under `keyfleet:` (its ACL is `~keyfleet:*`), so
// the app's keys live under its own prefix there: appKey('notes-api', …), `keyfleet:app:notes-api:`.

export interface Note {
  id: string;
  text: string;
  createdAt: string;
  /** The node that stored it, to see the farm at work. */
  node: string;
}

export const MAX_NOTE_LENGTH = 2_000;
export const MAX_NOTES_PER_USER = 500;

type NotesRedis = Pick<Keyfleet['redis'], 'hset' | 'hvals' | 'hdel' | 'hlen'>;

export class NotesStore {
  constructor(
    private readonly redis: NotesRedis,
    private readonly app = 'notes-api',
  ) {}

  private key(user: string): string {
    return appKey(this.app, 'notes', user);
  }

  async list(user: string): Promise<Note[]> {
    const values = await this.redis.hvals(this.key(user));
    return values.map((value) => JSON.parse(value) as Note).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async add(user: string, text: string, node: string): Promise<Note | undefined> {
    if ((await this.redis.hlen(this.key(user))) >= MAX_NOTES_PER_USER) return undefined;
    const note: Note = { id: randomUUID(), text, createdAt: new Date().toISOString(), node };
    await this.redis.hset(this.key(user), note.id, JSON.stringify(note));
    return note;
  }

  async remove(user: string, id: string): Promise<boolean> {
    return (await this.redis.hdel(this.key(user), id)) === 1;
  }
}
