/**
 * A webhook receiver of the harness's own, for tests and the bench: a local HTTP server that
 * verifies every request as a real receiver would (the `standardwebhooks` library, with a secret of
 * its own), keeps what it got, and answers what the test tells it to.
 * @module
 */
import { Webhook } from "standardwebhooks";

/** One request the receiver got. */
export interface ReceivedWebhook {
  /** The `webhook-id` header. */
  id: string;
  body: string;
  /** When it arrived and when it was answered, `Date.now()` milliseconds; answered undefined until then. */
  at: number;
  answeredAt?: number;
  /** The status answered. */
  status?: number;
  /** Whether its signature verified. */
  valid: boolean;
}

/** Options for {@linkcode startWebhookReceiver}. */
export interface WebhookReceiverOptions {
  /**
   * The status to answer a verified request with, after as long as it takes; `nth` counts the
   * requests of its `webhook-id`, this one included. @default {204 at once}
   */
  answer?: (request: ReceivedWebhook, nth: number) => Promise<number> | number;
}

/** A running receiver. */
export interface WebhookReceiver {
  url: string;
  /** `whsec_` and a random 32-byte key in base64: the service's `NOTIFY_WEBHOOK_SECRET`. */
  secret: string;
  /** Every request, in the order they arrived. */
  received: ReceivedWebhook[];
  /** `webhook-id`s that were in flight twice at once. */
  overlapping: string[];
  /** The most requests in flight at once. */
  maxInFlight: number;
  /** The environment that points notification at this receiver. */
  env: Record<string, string>;
  close(): Promise<void>;
}

/** Starts a receiver on a free port of 127.0.0.1. */
export function startWebhookReceiver(options: WebhookReceiverOptions = {}): WebhookReceiver {
  const { answer = () => 204 } = options;
  const key = crypto.getRandomValues(new Uint8Array(32));
  const secret = `whsec_${btoa(String.fromCharCode(...key))}`;
  const verifier = new Webhook(secret);
  const active = new Map<string, number>();
  let inFlight = 0;
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen() {} },
    async function receiveWebhook(request) {
      const body = await request.text();
      const id = request.headers.get("webhook-id") ?? "";
      let valid = true;
      try {
        verifier.verify(body, Object.fromEntries(request.headers));
      } catch {
        valid = false;
      }
      const received: ReceivedWebhook = { id, body, at: Date.now(), valid };
      receiver.received.push(received);
      if (!valid) return respond(received, 401);
      active.set(id, (active.get(id) ?? 0) + 1);
      if (active.get(id)! > 1) receiver.overlapping.push(id);
      receiver.maxInFlight = Math.max(receiver.maxInFlight, ++inFlight);
      try {
        const nth = receiver.received.filter((r) => r.id === id).length;
        return respond(received, await answer(received, nth));
      } finally {
        inFlight--;
        active.set(id, active.get(id)! - 1);
      }
    },
  );
  const url = `http://127.0.0.1:${server.addr.port}/webhooks/campus-food`;
  const receiver: WebhookReceiver = {
    url,
    secret,
    received: [],
    overlapping: [],
    maxInFlight: 0,
    env: { NOTIFY_WEBHOOK_URL: url, NOTIFY_WEBHOOK_SECRET: secret },
    close: () => server.shutdown(),
  };
  return receiver;
}

function respond(received: ReceivedWebhook, status: number): Response {
  received.status = status;
  received.answeredAt = Date.now();
  return new Response(null, { status });
}
