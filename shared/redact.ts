/**
 * Keeps passwords out of what a service shows: a URL's password becomes `***` wherever a URL is
 * logged, answered (`/ready`, an error body) or printed (a configuration error).
 * @module
 */

/** What a password is replaced with. */
export const REDACTED = "***";

// `scheme://user:password@`: the password runs to the last `@` before the host, as WHATWG URL
// parsing reads it, so a password holding an unescaped `@` is hidden whole.
const CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@"'<>]*):[^\s/"'<>]*@/gi;

/**
 * `text` with the password of every `scheme://user:password@host` in it replaced by
 * {@linkcode REDACTED}: a URL itself, or a message that may quote one, such as a library's error.
 * The user name stays, since it says which account is in use.
 *
 * @example
 * ```ts
 * redact("amqp://order:s3cret@rabbit:5672/campus"); // "amqp://order:***@rabbit:5672/campus"
 * ```
 */
export function redact(text: string): string {
  // The common case, text without credentials, costs one search and no copy.
  if (!text.includes("@")) return text;
  return text.replace(CREDENTIALS, `$1:${REDACTED}@`);
}
