import { createSecretKey, type KeyObject } from 'node:crypto';
import { importJWK, type JWK } from 'jose';
import { KeyfleetError } from '../lib/errors.js';
import { verifies } from './lifecycle.js';
import { ALGORITHMS, PURPOSES, type Purpose, type RingDocument, type StoredKey } from './types.js';
import { masterKeyId, unwrapMaterial } from './wrap.js';

/** A key ready for use: metadata plus the imported key object(s). Never serialized. */
export interface LiveKey {
  readonly meta: Omit<StoredKey, 'material'>;
  /** sign: private key; encrypt: AES key; cookie: the HMAC secret as a string. */
  readonly secret: CryptoKey | KeyObject | string;
  /** sign only: the public key, for verification. */
  readonly verifyKey?: CryptoKey | KeyObject;
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
  ) {
    this.byKid = new Map(keys.map((key) => [key.meta.kid, key]));
    this.activeByPurpose = new Map(keys.filter((key) => key.meta.state === 'active').map((key) => [key.meta.purpose, key]));
    // express-session signs with the first secret and accepts any: active first, then newest.
    this.cookieSecrets = keys
      .filter((key) => key.meta.purpose === 'cookie' && verifies(key.meta as StoredKey))
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

  /** The key for `kid` if it may verify for `purpose` (never a revoked one). */
  verifier(purpose: Purpose, kid: string | undefined): LiveKey | undefined {
    const key = kid === undefined ? undefined : this.byKid.get(kid);
    return key && key.meta.purpose === purpose && verifies(key.meta as StoredKey) ? key : undefined;
  }

  has(kid: string): boolean {
    return this.byKid.has(kid);
  }

  /** Public keys of every sign key that may still verify a token. */
  jwks(): { keys: JWK[] } {
    return {
      keys: this.document.keys
        .filter((key) => key.purpose === 'sign' && verifies(key) && key.publicJwk)
        .map((key) => key.publicJwk as JWK),
    };
  }

  /** Decrypts and imports every key of `document`, reusing imports from `previous`. */
  static async open(document: RingDocument, masterKey: Buffer, previous?: RingSnapshot): Promise<RingSnapshot> {
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
    return new RingSnapshot(document, live);
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
        const verifyKey = (await importJWK(stored.publicJwk ?? publicOf(jwk), ALGORITHMS.sign)) as CryptoKey;
        return { meta, secret, verifyKey, wrapped: stored.material };
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

function publicOf(jwk: JWK): JWK {
  const { d: _d, ...rest } = jwk;
  return rest;
}
