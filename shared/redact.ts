/**
 * Keeps secrets out of what a service shows: a URL's password and its secret-named query
 * parameters become `***` wherever a URL is logged, answered (`/ready`, an error body) or printed
 * (a configuration error).
 * @module
 */

/** What a secret is replaced with. */
export const REDACTED = "***";

/** Where a URL starts: its scheme and `//`. */
const SCHEME = /(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*:\/\//gi;

/** What may follow the `@` that ends a URL's user information: a host, then the end of it. */
const HOST_AFTER_AT = /(?:\[[0-9a-f:.]*\]|[a-z0-9._~%-]*)(?:$|[:/?#\s"'<>,;)\]}\\])/iy;

/** Where a user name ends: at the `:` before its password, or at what no user name holds. */
const USER_END = /[:/?#@\s"'<>\\]/;

/**
 * A query (or fragment) parameter whose name says it holds a secret (`password`, `access_token`,
 * `X-Amz-Signature`, `apiKey`...), and its value. The name only has to end with such a word.
 */
const SECRET_PARAMETER =
  /([?&;#][a-z0-9_.\-[\]]*?(?:password|passwd|pwd|secret|token|key|auth|signature|sig|credentials?)=)[^&#\s"'<>\\]+/gi;

/**
 * `text` with the password of every `scheme://user:password@host` in it, and the value of every
 * secret-named query parameter (`?password=`, `&access_token=`, `&sig=`...), replaced by
 * {@linkcode REDACTED}: a URL itself, or a message that may quote one, such as a library's error.
 * The user name stays, since it says which account is in use.
 *
 * A password runs from the user name's `:` to the last `@` before a host, whatever it holds
 * (`@`, `/`, quotes, spaces), as long as no other URL starts in between: hiding too much of an
 * odd line is the safe mistake. The one exception is `host:port/path…@`, read as a port and a path
 * rather than a password starting with digits and a slash.
 *
 * @example
 * ```ts
 * redact("amqp://order:s3cret@rabbit:5672/campus"); // "amqp://order:***@rabbit:5672/campus"
 * redact("https://hook.example/in?token=abc&x=1"); // "https://hook.example/in?token=***&x=1"
 * ```
 */
export function redact(text: string): string {
  // The common case, text without credentials, costs two searches and no copy.
  const hasAt = text.includes("@");
  if (!hasAt && !text.includes("=")) return text;
  const hidden = hasAt ? redactPasswords(text) : text;
  return hidden.replace(SECRET_PARAMETER, `$1${REDACTED}`);
}

/** `text` with the password of each URL's user information hidden. */
function redactPasswords(text: string): string {
  const starts = [...text.matchAll(SCHEME)].map((match) => ({
    at: match.index,
    after: match.index + match[0].length,
  }));
  let result = "";
  let copied = 0;
  for (const [i, { after }] of starts.entries()) {
    // A URL's user information ends before the next URL or line starts.
    const newline = text.indexOf("\n", after);
    const end = Math.min(starts[i + 1]?.at ?? text.length, newline < 0 ? text.length : newline);
    const rest = text.slice(after, end);
    const colon = rest.search(USER_END);
    if (colon < 0 || rest[colon] !== ":") continue;
    const at = lastHostAt(rest, colon);
    if (at < 0) continue;
    // `host:8001/orders?user_id=a@b.example` is a port and a path, not a password.
    if (/^\d{1,5}[/?#]/.test(rest.slice(colon + 1, at))) continue;
    result += text.slice(copied, after + colon + 1) + REDACTED;
    copied = after + at;
  }
  return copied === 0 ? text : result + text.slice(copied);
}

/** The index in `rest` of the last `@` after `from` that a host follows, or -1. */
function lastHostAt(rest: string, from: number): number {
  for (let at = rest.lastIndexOf("@"); at > from; at = rest.lastIndexOf("@", at - 1)) {
    HOST_AFTER_AT.lastIndex = at + 1;
    if (HOST_AFTER_AT.test(rest)) return at;
  }
  return -1;
}
