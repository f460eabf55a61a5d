/**
 * The console's webhook deliveries panel and its Retry, against a real notification service and
 * broker, in a secure stack (the services and the console check bearer tokens): deliveries that
 * failed are listed with their last error, a student cannot retry one, an id that is no
 * `webhook-id` is refused before anything is called, and an admin's retry reaches the receiver.
 */
import assert from "node:assert/strict";
import { waitFor } from "../../lib/async.ts";
import { INTEGRATION, type Stack, withStack } from "../../lib/stack.ts";
import { HARNESS_JWT_SECRET, harnessToken } from "../../lib/secure_mode.ts";
import { startWebhookReceiver } from "../../lib/webhook_receiver.ts";
import { recordingLogger } from "../../../shared/testing/recording_logger.ts";
import { openStore } from "../../../shared/store.ts";
import { NOTIFICATION_MIGRATIONS, notifyOrder } from "../../../notification/notifications.ts";
import { claimDeliveries, markAttemptFailed } from "../../../notification/webhook_deliveries.ts";
import { startConsole } from "./console.ts";
import { renderPanels } from "./panels.tsx";
import { servicesOf } from "./services.ts";

/**
 * Writes `count` notifications into notification's SQLite file, before it starts, each with a
 * delivery that failed its one attempt: what a receiver down for a day leaves. @returns their ids
 */
async function writeFailedDeliveries(stack: Stack, count: number): Promise<string[]> {
  const store = await openStore(stack.dataDir, "notification", {
    migrations: NOTIFICATION_MIGRATIONS,
  });
  try {
    await store.transaction(async (tx) => {
      for (let i = 0; i < count; i++) {
        await notifyOrder(tx, {
          kind: "order_confirmed",
          order: { order_id: `o${i}`, user_id: `u${i}` },
        }, { webhook: true });
      }
    });
    const claimed = await store.transaction((tx) =>
      claimDeliveries(tx, { limit: count, now: Date.now(), leaseMs: 30_000 })
    );
    await store.transaction(async (tx) => {
      for (const delivery of claimed) {
        await markAttemptFailed(tx, delivery, { error: "answered HTTP 500" });
      }
    });
    return claimed.map((delivery) => delivery.webhook_id);
  } finally {
    await store.close();
  }
}

function post(url: string, token?: string): Promise<Response> {
  const headers = new Headers({ accept: "application/json", origin: new URL(url).origin });
  if (token) headers.set("authorization", `Bearer ${token}`);
  return fetch(url, { method: "POST", headers, body: new FormData() });
}

Deno.test(
  "console lists failed webhook deliveries and retries one through notification, against the broker",
  INTEGRATION,
  async () => {
    const receiver = startWebhookReceiver();
    try {
      await withStack({
        services: [],
        secure: true,
        serviceEnv: { notification: receiver.env },
      }, async (stack) => {
        const [first, second] = await writeFailedDeliveries(stack, 2);
        await stack.start("notification");
        const [operator, student, reader] = await Promise.all([
          harnessToken("operator", { role: "admin" }),
          harnessToken("s1"),
          harnessToken("console", { role: "admin" }),
        ]);
        const { log, lines } = recordingLogger();
        const console_ = await startConsole({
          amqpUrls: [stack.amqpUrl],
          managementUrl: stack.managementUrl,
          services: servicesOf(stack),
          auth: { jwtSecret: HARNESS_JWT_SECRET },
          token: reader,
          log,
          port: 0,
        });
        try {
          const { url, live } = console_;
          const view = await waitFor("the failed deliveries read", () => {
            const deliveries = live.snapshot().deliveries;
            return deliveries?.counts.failed === 2 && deliveries;
          });
          assert.deepEqual(view.counts, { pending: 0, failed: 2 });
          assert.deepEqual(view.failed.map((d) => d.webhook_id).sort(), [first, second].sort());
          assert.ok(view.failed.every((d) => d.attempts === 1 && d.kind === "order_confirmed"));
          const html = renderPanels(live.snapshot()).get("deliveries")!;
          assert.match(html, /data-count="failed"[^>]*>2 failed/);
          assert.match(html, /answered HTTP 500/);
          const actions = [...html.matchAll(/action="([^"]*)"/g)].map((match) => match[1]).sort();
          assert.deepEqual(actions, [first, second].sort().map((id) => `/deliveries/${id}/retry`));

          const retry = (id: string) => new URL(`/deliveries/${id}/retry`, url).href;
          const byStudent = await post(retry(first), student);
          assert.equal(byStudent.status, 403);
          await byStudent.body?.cancel();
          for (const id of ["msg_x", `${first}x`, "..%2F..%2Fservices%2Fnotification%2Fstop"]) {
            const refused = await post(retry(id), operator);
            assert.equal(refused.status, 400, id);
            assert.match((await refused.json()).message, /Cannot retry the delivery as its id/);
          }
          const unknown = await post(retry("msg_01JABCDEFGHJKMNPQRSTVWXYZ0"), operator);
          assert.equal(unknown.status, 404, "notification does not know it");
          await unknown.body?.cancel();
          assert.equal(receiver.received.length, 0, "nothing was sent before the retry");

          const retried = await post(retry(first), operator);
          assert.equal(retried.status, 202);
          assert.match((await retried.json()).message, /pending again/);
          await waitFor(
            "the retried delivery at the receiver",
            () => receiver.received.some((r) => r.id === first && r.valid && r.status === 204),
          );
          await waitFor("the panel to count one failed", () => {
            const counts = live.snapshot().deliveries?.counts;
            return counts?.failed === 1 && counts.pending === 0;
          });
          assert.deepEqual(live.snapshot().deliveries!.failed.map((d) => d.webhook_id), [second]);
          assert.deepEqual(receiver.received.map((r) => r.id), [first], "only the one retried");
          const again = await post(retry(first), operator);
          assert.equal(again.status, 409, "a delivered one is not retried");
          assert.match((await again.json()).message, /this one is delivered/);
          assert.ok(lines.includes("info retried webhook delivery"));
          assert.deepEqual(
            live.snapshot().activity.map(({ who, what }) => `${what} by ${who}`),
            [`retried delivery …${first.slice(-8)} by 127.0.0.1 (operator)`],
          );

          await stack.stop("notification");
          const down = await post(retry(second), operator);
          assert.equal(down.status, 503);
          assert.match((await down.json()).message, /notification service is not running/);
        } finally {
          await console_.close();
        }
      });
    } finally {
      await receiver.close();
    }
  },
);
