/**
 * Sending one fuzzed HTTP request and reading its answer: through `fetch` where `fetch` will send
 * it, and otherwise written byte by byte on a TCP connection of its own, since `fetch` refuses
 * what the fuzzer most wants to try (method names such as `TRACE` or `get\x7f`, a body on a GET,
 * header values with control bytes, framing headers of the fuzzer's choosing).
 * @module
 */

/** One request as it goes on the wire. */
export interface WireRequest {
  method: string;
  /** The request target exactly as sent: path and query, already percent-encoded or not. */
  target: string;
  /** Header fields in order; each character of a value is one byte (code points 0-255). */
  headers: Array<[string, string]>;
  body?: Uint8Array;
  /**
   * Raw only: send this many bytes of the body and then nothing more, its `Content-Length` still
   * announcing all of it: a client that stalls mid-body. @default {the whole body}
   */
  stallAfter?: number;
  /** `raw`: always over TCP, as written; `fetch`: through `fetch`, over TCP when it refuses. */
  transport: "fetch" | "raw";
}

/** What came back. */
export interface WireAnswer {
  status: number;
  /** Header names lower-cased; repeated fields joined with ", ". */
  headers: Record<string, string>;
  body: Uint8Array;
  /** How it went out in the end. */
  sentBy: "fetch" | "raw";
}

/** Options for {@linkcode sendRequest}. */
export interface SendOptions {
  /** How long the whole exchange may take, in milliseconds. @default {10000} */
  timeoutMs?: number;
}

/**
 * Sends `request` to the service at `baseUrl` (`http://host:port`).
 * @throws {Error} naming the request when the service gives no complete answer in time (it closed
 * the connection, reset it, or kept silent)
 */
export async function sendRequest(
  baseUrl: string,
  request: WireRequest,
  options: SendOptions = {},
): Promise<WireAnswer> {
  const { timeoutMs = 10_000 } = options;
  const prepared = request.transport === "fetch" && request.stallAfter === undefined
    ? fetchable(baseUrl, request)
    : undefined;
  if (prepared) {
    try {
      const response = await fetch(prepared, { signal: AbortSignal.timeout(timeoutMs) });
      const headers: Record<string, string> = {};
      response.headers.forEach((value, name) => headers[name] = value);
      return {
        status: response.status,
        headers,
        body: new Uint8Array(await response.arrayBuffer()),
        sentBy: "fetch",
      };
    } catch (cause) {
      throw new Error(`Cannot ${describeWire(request)} as it got no answer`, { cause });
    }
  }
  return await sendRaw(new URL(baseUrl), request, timeoutMs);
}

/** `request` as a `Request`, or undefined when `fetch` would refuse it, or change it. */
function fetchable(baseUrl: string, request: WireRequest): Request | undefined {
  // fetch re-encodes a target and resolves its dot segments; only a plain one goes as written.
  if (!/^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$/.test(request.target)) return undefined;
  if (/(^|\/)\.\.?(\/|\?|$)/.test(request.target) || request.target.startsWith("//")) {
    return undefined;
  }
  // fetch upper-cases these six whatever the case they are written in.
  if (/^(delete|get|head|options|post|put)$/i.test(request.method)) {
    if (request.method !== request.method.toUpperCase()) return undefined;
  }
  const framing = /^(host|content-length|transfer-encoding|connection)$/i;
  if (request.headers.some(([name]) => framing.test(name))) return undefined;
  try {
    return new Request(baseUrl + request.target, {
      method: request.method,
      headers: request.headers,
      body: request.body as Uint8Array<ArrayBuffer> | undefined,
    });
  } catch {
    return undefined;
  }
}

const encoder = new TextEncoder();

/** The request's bytes, with `Host`, `Connection: close` and a `Content-Length` unless it has framing. */
export function encodeRequest(host: string, request: WireRequest): Uint8Array {
  const lines = [`${request.method} ${request.target} HTTP/1.1`];
  const has = (name: string) => request.headers.some(([n]) => n.toLowerCase() === name);
  if (!has("host")) lines.push(`Host: ${host}`);
  for (const [name, value] of request.headers) lines.push(`${name}: ${value}`);
  if (!has("connection")) lines.push("Connection: close");
  if (request.body && !has("content-length") && !has("transfer-encoding")) {
    lines.push(`Content-Length: ${request.body.length}`);
  }
  const head = latin1Bytes(lines.join("\r\n") + "\r\n\r\n");
  const bytes = new Uint8Array(head.length + (request.body?.length ?? 0));
  bytes.set(head);
  if (request.body) bytes.set(request.body, head.length);
  return bytes;
}

/** One byte per character: what a header value with bytes above 0x7f is on the wire. */
function latin1Bytes(text: string): Uint8Array {
  // Any character above 0xff is the request line's or a header's, and would be a fuzzer's bug.
  if ([...text].some((character) => character.charCodeAt(0) > 0xff)) return encoder.encode(text);
  return Uint8Array.from(text, (character) => character.charCodeAt(0));
}

async function sendRaw(url: URL, request: WireRequest, timeoutMs: number): Promise<WireAnswer> {
  const connection = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  const timer = setTimeout(() => connection.close(), timeoutMs);
  const chunks: Uint8Array[] = [];
  try {
    // The server may answer (413, say) and close before the whole body is written: read anyway.
    const bytes = encodeRequest(url.host, request);
    const unsent = request.body && request.stallAfter !== undefined
      ? Math.max(0, request.body.length - request.stallAfter)
      : 0;
    const writing = writeAll(connection, bytes.subarray(0, bytes.length - unsent)).catch(() => {});
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      const n = await connection.read(buffer);
      if (n === null) break;
      chunks.push(buffer.slice(0, n));
      // A server that answered early (a 413, say) may keep reading the rest: stop at the answer.
      if (parseAnswer(concat(chunks))?.framed) break;
    }
    await writing;
  } catch {
    // Reset or closed by the timer: what arrived so far is parsed, and judged, below.
  } finally {
    clearTimeout(timer);
    try {
      connection.close();
    } catch {
      // Closed already.
    }
  }
  const parsed = parseAnswer(concat(chunks));
  if (!parsed) {
    throw new Error(
      `Cannot ${describeWire(request)} as it got no complete answer within ${timeoutMs} ms ` +
        `(${chunks.reduce((sum, c) => sum + c.length, 0)} bytes came back)`,
    );
  }
  const { framed: _framed, ...answer } = parsed;
  return { ...answer, sentBy: "raw" };
}

async function writeAll(connection: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await connection.write(bytes.subarray(written));
}

/** `body` in chunked framing (`Transfer-Encoding: chunked`), in pieces of up to 1000 bytes. */
export function chunked(body: Uint8Array): Uint8Array {
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (let at = 0; at < body.length; at += 1000) {
    const piece = body.subarray(at, at + 1000);
    parts.push(encoder.encode(`${piece.length.toString(16)}\r\n`), piece, encoder.encode("\r\n"));
  }
  parts.push(encoder.encode("0\r\n\r\n"));
  return concat(parts);
}

/** `chunks` end to end in one array. */
function concat(chunks: Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

/**
 * The first HTTP/1.1 response in `bytes` (status, headers, a body framed by `Content-Length`, by
 * chunks or by the close), or undefined when `bytes` hold no complete one. `framed` is true when
 * its length was known, so that no more bytes can belong to it.
 */
export function parseAnswer(
  bytes: Uint8Array,
): Omit<WireAnswer, "sentBy"> & { framed: boolean } | undefined {
  const text = new TextDecoder("latin1").decode(bytes);
  const end = text.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const [statusLine, ...fields] = text.slice(0, end).split("\r\n");
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!match) return undefined;
  // An interim answer (100 Continue to an Expect header) comes before the real one.
  if (match[1].startsWith("1")) return parseAnswer(bytes.subarray(end + 4));
  const headers: Record<string, string> = {};
  for (const field of fields) {
    const colon = field.indexOf(":");
    const name = field.slice(0, colon).trim().toLowerCase();
    const value = field.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  const rest = bytes.subarray(end + 4);
  if (headers["transfer-encoding"]?.toLowerCase().includes("chunked")) {
    const body = dechunk(rest);
    return body && { status: Number(match[1]), headers, body, framed: true };
  }
  const length = headers["content-length"];
  if (length !== undefined) {
    if (rest.length < Number(length)) return undefined;
    return {
      status: Number(match[1]),
      headers,
      body: rest.slice(0, Number(length)),
      framed: true,
    };
  }
  return { status: Number(match[1]), headers, body: rest.slice(), framed: false };
}

/** A chunked body's bytes, or undefined when its last chunk has not arrived. */
function dechunk(bytes: Uint8Array): Uint8Array | undefined {
  const parts: Uint8Array[] = [];
  let at = 0;
  while (true) {
    let lineEnd = at;
    while (lineEnd + 1 < bytes.length && !(bytes[lineEnd] === 13 && bytes[lineEnd + 1] === 10)) {
      lineEnd++;
    }
    if (lineEnd + 1 >= bytes.length) return undefined;
    const size = parseInt(new TextDecoder().decode(bytes.subarray(at, lineEnd)), 16);
    if (!Number.isFinite(size)) return undefined;
    if (size === 0) return concat(parts);
    const start = lineEnd + 2;
    if (start + size > bytes.length) return undefined;
    parts.push(bytes.subarray(start, start + size));
    at = start + size + 2;
  }
}

/** The request in one line, short enough for a message: method, target, sizes. */
export function describeWire(request: WireRequest): string {
  const method = JSON.stringify(
    request.method.length > 40 ? request.method.slice(0, 40) + "…" : request.method,
  );
  const target = JSON.stringify(
    request.target.length > 80 ? request.target.slice(0, 80) + "…" : request.target,
  );
  return `send ${method} ${target} (${request.headers.length} headers, ${
    request.body?.length ?? 0
  } body bytes, by ${request.transport})`;
}
