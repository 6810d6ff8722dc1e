/** Milliseconds since the epoch. Injected everywhere time matters so tests can freeze it. */
export interface Clock {
  now(): number;
  /**
   * Resolves once `ms` of this clock's time has passed. Optional: the system clock waits on a
   * timer; a test clock advances itself, so a wait of minutes takes no time at all.
   */
  sleep?(ms: number): Promise<void>;
}

export const systemClock: Clock = { now: () => Date.now() };

/** Waits `ms` by `clock` (its own sleep when it has one, else a real timer). */
export function sleep(clock: Clock, ms: number): Promise<void> {
  return clock.sleep ? clock.sleep(ms) : new Promise((resolve) => setTimeout(resolve, ms));
}
