// What a nemesis run records: every client operation, every fault and operator action, and
// what the observers saw (node health, heartbeats, the lease, the ring in Redis), each with
// its times (ms since the epoch, the host's clock: the containers share its kernel clock).

export type OpKind = 'login' | 'me-token' | 'me-cookie' | 'me-session' | 'logout';

export interface Op {
  id: number;
  worker: number;
  kind: OpKind;
  start: number;
  end: number;
  /** HTTP status; 0 when no answer came (connection error, timeout). */
  status: number;
  /** The JSON `code` of an error answer, or the client-side error's name. */
  code?: string;
  /** X-Node-Id of the node that answered. */
  node?: string;
  /** The key id the credential names (JWT or JWE header); absent for `sid`, which has none. */
  kid?: string;
  /** When the login that minted the credential started and ended. */
  loginStart?: number;
  loginEnd?: number;
  /** The token's `exp` (ms). */
  expiresAt?: number;
  /** login: whether the answer carried a session (false while Redis is away). */
  session?: boolean;
}

export type FaultKind =
  | 'kill'
  | 'scale-out'
  | 'scale-in'
  | 'rolling-replace'
  | 'pause-short'
  | 'pause-long'
  | 'cut-redis'
  | 'cut-all'
  | 'restart-redis'
  | 'rotate'
  | 'revoke';

export interface Fault {
  kind: FaultKind;
  /** The node (or `redis`) it hit, if one. */
  target?: string;
  start: number;
  end: number;
  /** When the fault itself began and ended (a pause or a cut), inside [start, end]. */
  activeFrom?: number;
  activeUntil?: number;
  ok: boolean;
  detail?: string;
  /** revoke: the key revoked and its purpose; rotate: the purpose. */
  kid?: string;
  purpose?: string;
  exitCode?: number;
}

export interface HealthSample {
  at: number;
  node: string;
  status: number;
  version?: number;
}

export interface BeatSample {
  node: string;
  at: number;
  primary: boolean;
  ringVersion: number;
}

export interface RingKeySample {
  kid: string;
  purpose: string;
  state: string;
  activatedAt?: number;
  deleteAfter?: number;
}

export interface RingSample {
  at: number;
  version: number;
  keys: RingKeySample[];
}

export interface LeaseSample {
  at: number;
  token: string | null;
}

export class History {
  readonly ops: Op[] = [];
  readonly faults: Fault[] = [];
  readonly health: HealthSample[] = [];
  readonly beats: BeatSample[] = [];
  readonly rings: RingSample[] = [];
  readonly leases: LeaseSample[] = [];
  /** When the last fault ended, and when the cluster was healthy again after it. */
  lastFaultEnd?: number;
  healthyAt?: number;
  private nextOp = 1;

  op(fields: Omit<Op, 'id'>): Op {
    const op = { id: this.nextOp++, ...fields };
    this.ops.push(op);
    return op;
  }
}
