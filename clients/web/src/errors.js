// The one error type the library throws. `code` is stable and
// machine-readable; `message` is for people; `hint`, when present, says
// what to do. Server refusals keep the server's own code and hint.

export class RekeyError extends Error {
  /**
   * @param {string} code snake_case code (ours, or the server's)
   * @param {string} message what went wrong (never contains secrets)
   * @param {object} [extra] `hint`, `status` (HTTP), `retryAfter` (seconds), `cause`
   */
  constructor(code, message, extra = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = 'RekeyError';
    this.code = code;
    this.hint = extra.hint ?? null;
    this.status = extra.status ?? null;
    this.retryAfter = extra.retryAfter ?? null;
  }
}

/** Thrown instead of a RekeyError when the caller's AbortSignal fired. */
export function abortError(signal) {
  const reason = signal?.reason;
  if (reason instanceof Error) return reason;
  return new RekeyError('aborted', 'the migration was cancelled');
}

/** Throws if `signal` has fired. */
export function checkAborted(signal) {
  if (signal?.aborted) throw abortError(signal);
}
