/**
 * `deno task test:dlq`: a spread of poison published to `OrderPlaced`, interleaved with valid
 * orders placed over HTTP. PASS when every poison message is in `order-placed.dlq`, unchanged, with
 * an `x-rejected-reason` header that says why, every valid order is CONFIRMED, and inventory is
 * still healthy.
 * @module
 */
import { waitFor } from "../lib/async.ts";
import { payloadBytes, peekQueue, publishOrderPlaced } from "../lib/broker_probes.ts";
import { countEffects } from "../lib/effects.ts";
import { tally } from "../lib/format.ts";
import { placeOrder, statusOf, waitReady } from "../lib/http_probes.ts";
import { runFromCommandLine, runScenario } from "../lib/scenario.ts";
import type { ScenarioOptions, ScenarioResult } from "../lib/scenario.ts";
import { withStack } from "../lib/stack.ts";
import { newId } from "../../shared/ids.ts";
import { deadLetterQueue, EventType, Queue } from "../../shared/topology.ts";

/** Options for {@linkcode runDlq}. */
export type DlqOptions = ScenarioOptions;

const USAGE = `Usage: deno task test:dlq [--json]

  --json  print one JSON object instead of the steps`;

/** One kind of poison: its body, and what its rejection reason must mention. */
interface Poison {
  name: string;
  body: Uint8Array;
  reason: RegExp;
}

const encoder = new TextEncoder();

/** An `OrderPlaced` that is valid but for what `order` changes. */
function orderPlacedWith(order: Record<string, unknown>): string {
  return JSON.stringify({
    event_id: newId(),
    event_type: EventType.OrderPlaced,
    order: { order_id: newId(), user_id: "u1", items: [{ sku: "soda", qty: 1 }], ...order },
  });
}

/** The poison this scenario publishes, in order. */
export function poisonMessages(): Poison[] {
  const text = (name: string, body: string, reason: RegExp) => ({
    name,
    body: encoder.encode(body),
    reason,
  });
  const oneMiB = 1024 * 1024;
  const frame = orderPlacedWith({ user_id: "" });
  const big = orderPlacedWith({ user_id: "x".repeat(oneMiB - frame.length) });
  return [
    text("not JSON", "this is not JSON", /JSON/),
    text("a JSON array", `[${orderPlacedWith({})}]`, /array/),
    text("{}", "{}", /event_id/),
    text("an empty body", "", /JSON/),
    {
      name: "invalid UTF-8",
      body: new Uint8Array([
        ...encoder.encode('{"event_id":"'),
        0xc3,
        0x28,
        0xff,
        ...encoder.encode('"}'),
      ]),
      reason: /UTF-8/,
    },
    text("an order without items", orderPlacedWith({ items: undefined }), /items/),
    text("a negative quantity", orderPlacedWith({ items: [{ sku: "soda", qty: -1 }] }), /qty/),
    text("a quantity as a string", orderPlacedWith({ items: [{ sku: "soda", qty: "1" }] }), /qty/),
    text("a 1 MiB body", big, /user_id/),
    text("the original system's poison", '{"invalid": "json", "no": "order field"}', /event_id/),
  ];
}

/** Runs the DLQ scenario on a stack of its own. */
export function runDlq(options: DlqOptions = {}): Promise<ScenarioResult> {
  return runScenario("dlq", options, async (report) => {
    const poison = poisonMessages();
    report.step("starting an isolated stack (fresh vhost, temporary data directory, free ports)");
    await withStack({}, async (stack) => {
      report.step(`stack up in vhost ${stack.vhost.name}`);
      await waitReady(stack);
      const inventory = stack.services.inventory!;
      let inventoryExited = false;
      inventory.exited.then(() => inventoryExited = true);
      // Seeing each valid order's OrderPlaced on a tap before the next poison keeps them interleaved.
      const placed = await stack.tools.tap([EventType.OrderPlaced]);
      const orderIds: string[] = [];
      async function placeValid(): Promise<void> {
        const id = await placeOrder(stack, { user_id: "u1", items: [{ sku: "soda", qty: 1 }] });
        orderIds.push(id);
        await waitFor(
          `OrderPlaced of ${id} to be published`,
          () => placed.messages.some((m) => m.correlationId === id),
        );
      }
      await placeValid();
      for (const [i, message] of poison.entries()) {
        await publishOrderPlaced(stack, message.body, `poison-${i}`);
        report.step(`published poison ${i}: ${message.name} (${message.body.length} bytes)`);
        await placeValid();
      }
      report.step(
        `placed ${orderIds.length} valid orders over HTTP, one before and one after each poison`,
      );

      await waitFor(
        `${poison.length} messages in order-placed.dlq`,
        async () =>
          await stack.tools.queueDepth(deadLetterQueue(Queue.orderPlaced)) >= poison.length,
      );
      await waitFor(
        "every valid order to be decided",
        async () => (await countEffects(stack, orderIds)).every((e) => e.status !== "PENDING"),
        {
          timeoutMs: 30_000,
          intervalMs: 100,
        },
      );
      const parked = await peekQueue(stack, deadLetterQueue(Queue.orderPlaced), 100);
      report.step(`order-placed.dlq holds ${parked.length} messages:`);
      report.expect(
        parked.length === poison.length,
        `${poison.length} messages in order-placed.dlq`,
        `${parked.length}`,
      );
      for (const [i, message] of poison.entries()) {
        const found = parked.find((m) => m.properties.message_id === `poison-${i}`);
        const reason = found?.properties.headers?.["x-rejected-reason"];
        report.step(
          `  ${message.name}: ${found ? `x-rejected-reason ${JSON.stringify(reason)}` : "MISSING"}`,
        );
        report.expect(found !== undefined, `${message.name} in order-placed.dlq`, "it missing");
        if (!found) continue;
        report.expect(
          typeof reason === "string" && message.reason.test(reason),
          `${message.name} rejected with a reason matching ${message.reason}`,
          JSON.stringify(reason),
        );
        report.expect(
          equalBytes(payloadBytes(found), message.body),
          `${message.name} parked unchanged (${message.body.length} bytes)`,
          `${found.payload_bytes} bytes that differ`,
        );
      }

      const statuses = (await countEffects(stack, orderIds)).map((e) => e.status);
      report.step(`valid orders: ${tally(statuses)}`);
      report.expect(
        statuses.every((s) => s === "CONFIRMED"),
        `all ${orderIds.length} valid orders CONFIRMED`,
        tally(statuses),
      );
      const health = await statusOf(`${inventory.url}/health`);
      const ready = await statusOf(`${inventory.url}/ready`);
      const depth = await stack.tools.queueDepth(Queue.orderPlaced);
      report.step(
        `inventory: /health ${health}, /ready ${ready}, ${
          inventoryExited ? "exited" : "still running"
        }; order-placed depth ${depth}`,
      );
      report.expect(
        health === 200 && ready === 200 && !inventoryExited,
        "inventory healthy and running (/health 200, /ready 200)",
        `/health ${health}, /ready ${ready}${inventoryExited ? ", process exited" : ""}`,
      );
      report.expect(depth === 0, "order-placed empty", `${depth} messages`);
      const deadLettered = inventory.logs.filter((l) => l.msg === "dead-lettered message").length;
      report.figure("poison_published", poison.length);
      report.figure("poison_in_dlq", parked.length);
      report.figure("dead_lettered_log_lines", deadLettered);
      report.figure("valid_orders", orderIds.length);
      report.figure("valid_confirmed", statuses.filter((s) => s === "CONFIRMED").length);
      report.summary(
        `${poison.length} poison messages in order-placed.dlq with x-rejected-reason, ` +
          `${orderIds.length} valid orders CONFIRMED, inventory healthy`,
      );
    });
  });
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

if (import.meta.main) {
  await runFromCommandLine("dlq", (_args, log) => runDlq({ log }), { usage: USAGE });
}
