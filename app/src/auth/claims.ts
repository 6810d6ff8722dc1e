// Claims every token and auth cookie carries; verifiers check them with the same values.
export const ISSUER = 'keyfleet';
export const AUDIENCE = 'keyfleet';
/** Longer tokens are refused before any parsing or crypto. */
export const MAX_TOKEN_BYTES = 4096;

export interface Principal {
  user: string;
  via: 'token' | 'cookie' | 'session';
  /** The `auth` cookie's generation (ms): when it was sealed, when its login was, and whether this answer renewed it. */
  cookie?: { issuedAt: number; startedAt: number; renewed: boolean };
}
