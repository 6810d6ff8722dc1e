import type { Request } from 'express';
import { describe, expectTypeOf, it } from 'vitest';
import type { Claims, ClaimsSchema, createKeyfleet, Keyfleet, LoginOptions, Principal } from '../../../app/src/index.js';

// Type-level: what an app declares for its claims. `tsc -p test` checks this file (a type
// that stopped fitting fails the typecheck); vitest runs the few assertions at run time.

/** An app's claims declared the way apps declare them: an interface (no index signature). */
interface NoteClaims {
  role: 'editor' | 'reader';
  tenant?: string;
}
type AliasClaims = { role: 'admin' };
const noteClaims: ClaimsSchema<NoteClaims> = { parse: (input) => input as NoteClaims };

describe('claims types', () => {
  it('createKeyfleet accepts an interface as its claims type, and types the principal with it', () => {
    type Create = typeof createKeyfleet<NoteClaims>;
    expectTypeOf<ReturnType<Create>>().toEqualTypeOf<Keyfleet<NoteClaims>>();
    expectTypeOf<Keyfleet<NoteClaims>['principal']>().returns.toEqualTypeOf<Principal<NoteClaims> | undefined>();
    expectTypeOf<Principal<NoteClaims>['claims']['role']>().toEqualTypeOf<'editor' | 'reader'>();
    expectTypeOf<LoginOptions<NoteClaims>['claims']>().toEqualTypeOf<NoteClaims | undefined>();
    expectTypeOf<Keyfleet<NoteClaims>['verifyToken']>().returns.resolves.toEqualTypeOf<Principal<NoteClaims>>();
    expectTypeOf(noteClaims).toMatchTypeOf<ClaimsSchema<NoteClaims>>();
  });

  it('still accepts type aliases, and defaults to Claims', () => {
    expectTypeOf<Principal<AliasClaims>['claims']>().toEqualTypeOf<AliasClaims>();
    expectTypeOf<Keyfleet['principal']>().parameter(0).toEqualTypeOf<Request>();
    expectTypeOf<Principal['claims']>().toEqualTypeOf<Claims>();
  });

  it('refuses what is not an object type', () => {
    // @ts-expect-error a string is no claims object
    expectTypeOf<Keyfleet<string>>().not.toBeAny();
    // @ts-expect-error nor a number
    expectTypeOf<Principal<number>>().not.toBeAny();
  });
});
