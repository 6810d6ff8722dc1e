// Errors with stable codes: callers and tests branch on `code`, never on message text.
// `status` is what the HTTP error handler answers; messages for 4xx are safe to show.
export class KeyfleetError extends Error {
  readonly code: string;
  readonly status: number;

  constructor(code: string, message: string, status = 500, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KeyfleetError';
    this.code = code;
    this.status = status;
  }
}

export const unauthorized = (code: string, message = 'authentication required') =>
  new KeyfleetError(code, message, 401);

export const badRequest = (code: string, message: string) => new KeyfleetError(code, message, 400);

export const unavailable = (code: string, message: string) => new KeyfleetError(code, message, 503);

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}
