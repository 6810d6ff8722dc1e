import { createPrivateKey, createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { importJWK, type JWK } from 'jose';
import { systemClock, type Clock } from '../lib/clock.js';
import { KeyfleetError } from '../lib/errors.js';
import { verifies } from './lifecycle.js';
import { ALGORITHMS, PURPOSES, type Purpose, type RingDocument, type StoredKey } from './types.js';
import { masterKeyId, unwrapMaterial } from './wrap.js';

/** A key ready for use: metadata plus the imported key object(s). Never serialized. */
export interface LiveKey {
  readonly meta: Omit<StoredKey, 'material'>;
  /** sign: private key; encrypt: AES key; cookie: the HMAC secret as a string. */
  readonly secret: CryptoKey | KeyObject | string;
  /** sign only: the public key, for verification, derived from the private key (never read from storage). */
  readonly verifyKey?: CryptoKey | KeyObject;
  /** sign only: the public JWK the JWKS publishes, derived like `verifyKey`. */
  readonly publicJwk?: JWK;
  /** The wrapped material it came from: a later snapshot reuses the import if unchanged. */
  readonly wrapped: string;
}

/**
 * An immutable, decrypted view of one ring version. The request path reads only this, so
 * checking a token or cookie never waits on the network.
 */
export class RingSnapshot {
  private readonly byKid: Map<string, LiveKey>;
  private readonly activeByPurpose: Map<Purpose, LiveKey>;
  readonly cookieSecrets: readonly string[];

  private constructor(
    readonly document: RingDocument,
    keys: LiveKey[],
    private readonly clock: Clock,
  ) {
    this.byKid = new Map(keys.map((key) => [key.meta.kid, key]));
    this.activeByPurpose = new Map(keys.filter((key) => key.meta.state === 'active').map((key) => [key.meta.purpose, key]));
    // express-session signs with the first secret and accepts any: active first, then newest.
    this.cookieSecrets = keys
      .filter((key) => key.meta.purpose === 'cookie' && this.mayVerify(key))
      .sort((a, b) => rank(a) - rank(b) || b.meta.createdAt - a.meta.createdAt)
      .map((key) => key.secret as string);
  }

  get version(): number {
    return this.document.version;
  }

  /** True when every purpose has a key to mint with: the node can serve. */
  get complete(): boolean {
    return PURPOSES.every((purpose) => this.activeByPurpose.has(purpose));
  }

  active(purpose: Purpose): LiveKey | undefined {
    return this.activeByPurpose.get(purpose);
  }

  /** The key for `kid` if it may verify for `purpose`: never a revoked one, nor a retired one past its deleteAfter. */
  verifier(purpose: Purpose, kid: string | undefined): LiveKey | undefined {
    const key = kid === undefined ? undefined : this.byKid.get(kid);
    return key && key.meta.purpose === purpose && this.mayVerify(key) ? key : undefined;
  }

  // A retired key stops at its deleteAfter on every node's own clock, whether or not a
  // primary is running to delete it.
  private mayVerify(key: LiveKey): boolean {
    const { deleteAfter, state } = key.meta;
    return verifies(key.meta as StoredKey) && !(state === 'retired' && deleteAfter !== undefined && deleteAfter <= this.clock.now());
  }

  has(kid: string): boolean {
    return this.byKid.has(kid);
  }

  /** Public keys of every sign key that may still verify a token. */
  jwks(): { keys: JWK[] } {
    return {
      keys: [...this.byKid.values()]
        .filter((key) => key.meta.purpose === 'sign' && this.mayVerify(key) && key.publicJwk)
        .map((key) => key.publicJwk as JWK),
    };
  }

  /** Decrypts and imports every key of `document`, reusing imports from `previous`. */
  static async open(document: RingDocument, masterKey: Buffer, previous?: RingSnapshot, clock: Clock = previous?.clock ?? systemClock): Promise<RingSnapshot> {
    if (document.masterKeyId !== masterKeyId(masterKey)) {
      throw new KeyfleetError(
        'ERR_MASTER_KEY_MISMATCH',
        `the key ring in Redis was written under another master key (id ${document.masterKeyId}, this node has ${masterKeyId(masterKey)}): check KEYRING_MASTER_KEY`,
      );
    }
    const live = await Promise.all(
      document.keys.map(async (stored) => {
        const reused = previous?.byKid.get(stored.kid);
        if (reused && reused.wrapped === stored.material) return { ...reused, meta: metaOf(stored) };
        return importKey(stored, masterKey);
      }),
    );
    return new RingSnapshot(document, live, clock);
  }
}

const rank = (key: LiveKey) => (key.meta.state === 'active' ? 0 : 1);

function metaOf(stored: StoredKey): Omit<StoredKey, 'material'> {
  const { material: _material, ...meta } = stored;
  return meta;
}

async function importKey(stored: StoredKey, masterKey: Buffer): Promise<LiveKey> {
  const plaintext = unwrapMaterial(masterKey, stored.kid, stored.purpose, stored.material);
  const meta = metaOf(stored);
  try {
    switch (stored.purpose) {
      case 'sign': {
        const jwk = JSON.parse(plaintext.toString('utf8')) as JWK;
        const secret = (await importJWK(jwk, ALGORITHMS.sign)) as CryptoKey;
        const publicJwk = publicOf(jwk, stored.kid);
        const verifyKey = (await importJWK(publicJwk, ALGORITHMS.sign)) as CryptoKey;
        return { meta, secret, verifyKey, publicJwk, wrapped: stored.material };
      }
      case 'encrypt':
        return { meta, secret: createSecretKey(Buffer.from(plaintext)), wrapped: stored.material };
      case 'cookie':
        return { meta, secret: plaintext.toString('base64url'), wrapped: stored.material };
    }
  } finally {
    plaintext.fill(0);
  }
}

/** The public half, computed from the private key: whatever storage says is never used. */
function publicOf(jwk: JWK, kid: string): JWK {
  const derived = createPublicKey(createPrivateKey({ key: jwk as import('node:crypto').JsonWebKey, format: 'jwk' })).export({ format: 'jwk' });
  return { kty: derived.kty, crv: derived.crv, x: derived.x, y: derived.y, kid, alg: ALGORITHMS.sign, use: 'sig' } as JWK;
}
