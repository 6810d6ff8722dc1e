import { ERRORS, type ErrorCode } from './errorCodes.js';

export { ERRORS, exitCodeOf, isErrorCode, type ErrorCode, type ErrorSpec } from './errorCodes.js';

// Errors with stable codes: callers and tests branch on `code`, never on message text.
// `status` is what the HTTP error handler answers, read from the catalogue (errorCodes.ts)
// like the CLI's exit code; messages for 4xx are safe to show.
export class KeyfleetError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string = ERRORS[code].message, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KeyfleetError';
    this.code = code;
  }

  /** The HTTP status of this code (errorCodes.ts). */
  get status(): number {
    return ERRORS[this.code].status;
  }
}

export const unauthorized = (code: ErrorCode, message: string = ERRORS[code].message) => new KeyfleetError(code, message);

export const badRequest = (code: ErrorCode, message: string = ERRORS[code].message) => new KeyfleetError(code, message);

export const unavailable = (code: ErrorCode, message: string = ERRORS[code].message) => new KeyfleetError(code, message);

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}
