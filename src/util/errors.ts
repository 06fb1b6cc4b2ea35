/**
 * An error caused by what the user gave us (a bad flag, a missing or malformed file).
 * Front doors turn it into one line (CLI, exit code `exitCode`) or an HTTP 4xx with the message.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
    readonly httpStatus = 400,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/** A file that was refused because reading it could run code or exhaust memory. */
export class UnsafeFileError extends UserError {
  constructor(message: string) {
    super(message, 3, 422);
    this.name = 'UnsafeFileError';
  }
}
