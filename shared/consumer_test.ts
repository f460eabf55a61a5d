import assert from "node:assert/strict";
import type { Migration, Store } from "./store.ts";
import { storeKinds } from "./testing/stores.ts";
import { type FakeBroker, fakeBroker, testDelivery } from "./testing/fake_broker.ts";
import { recordingLogger } from "./testing/recording_logger.ts";
import { testContext } from "./testing/message_context.ts";
import { tmpfsUnavailable, withStoreOnTmpfs } from "./testing/tmpfs.ts";
import { INBOX_MIGRATION } from "./inbox.ts";
import { listenOutbox, OUTBOX_MIGRATION } from "./outbox.ts";
import {
  CancelReason,
  inventoryOutcome,
  type OrderCancelled,
  orderCancelled,
  orderCancelledSchema,
} from "./events.ts";
import { DEAD_LETTER_EXCHANGE, EventType, Queue, RETRY_EXCHANGE, retryQueue } from "./topology.ts";
import type { Delivery, Settlement } from "./delivery.ts";
import {
  eachEvent,
  type EventHandler,
  firstOfEach,
  PoisonMessageError,
  RETRY_ATTEMPT_HEADER,
  startConsumer,
} from "./consumer.ts";
import { type OutageWatch, watchOutages } from "./outage.ts";
import { PUBLISHED_BY_HEADER, UNTRUSTED_PUBLISHER } from "./origin.ts";

const QUEUE = Queue.orderCancelled;
const RETRY_DELAYS_MS = [1000, 5000];
const MIGRATIONS: Migration[] = [INBOX_MIGRATION, OUTBOX_MIGRATION, {
  name: "effects",
  sql: "CREATE TABLE effects (order_id TEXT PRIMARY KEY)",
}];
const sqlite = (await storeKinds()).find((kind) => kind.name === "sqlite")!;

/**
 * Records the order's effect and publishes an outcome for it; an order named `fail…` fails as a
 * transient error would, one named `poison…` as a message that can never succeed.
 */
const handle: EventHandler<OrderCancelled> = async (tx, event, context) => {
  if (event.order_id.startsWith("fail")) throw new Error("Cannot reach the kitchen");
  if (event.order_id.startsWith("poison")) {
    throw new PoisonMessageError("order_id names no order");
  }
  await tx.run("INSERT INTO effects (order_id) VALUES (?)", event.order_id);
  context.publish(inventoryOutcome(orderFacts(event.order_id), "order cancelled"));
};

function orderFacts(orderId: string) {
  return { order_id: orderId, user_id: "u1", items: [{ sku: "burger", qty: 1 }] };
}

function cancelled(orderId: string): OrderCancelled {
  return orderCancelled(orderFacts(orderId), {
    reason: CancelReason.cancelled,
    previousStatus: "PENDING",
  });
}

function delivery(event: unknown, headers: Record<string, unknown> = {}): Delivery {
  return testDelivery(event, { type: EventType.OrderCancelled, headers });
}

interface Fixture {
  store: Store;
  broker: FakeBroker;
  outages: OutageWatch;
  lines: string[];
  /** Hands `batch` to the consumer and resolves with its settlements. */
  deliver(batch: Delivery[], channelLost?: AbortSignal): Promise<Settlement[]>;
  /** The orders whose effect is committed, and the outcomes in the outbox. */
  committed(): Promise<{ effects: string[]; outbox: string[] }>;
}

/** Runs `fn` with a consumer of `QUEUE` over `store` and a fake broker; stops it after. */
async function withConsumer(
  store: Store,
  fn: (fixture: Fixture) => Promise<void>,
  options: { user?: string } = {},
): Promise<void> {
  const broker = fakeBroker(options);
  const { log, lines } = recordingLogger();
  const outages = watchOutages(store, { log, initialDelayMs: 10, maxDelayMs: 50 });
  const consumer = startConsumer(broker, store, {
    queue: QUEUE,
    schema: orderCancelledSchema,
    handle: eachEvent(handle),
    log,
    outages,
    retryDelaysMs: RETRY_DELAYS_MS,
  });
  const committed = () =>
    store.read(async (tx) => ({
      effects:
        (await tx.all<{ order_id: string }>("SELECT order_id FROM effects ORDER BY order_id"))
          .map((row) => row.order_id),
      outbox: (await tx.all<{ correlation_id: string }>(
        "SELECT correlation_id FROM outbox ORDER BY sequence_number",
      )).map((row) => row.correlation_id),
    }));
  try {
    await fn({
      store,
      broker,
      outages,
      lines,
      deliver: (batch, channelLost) => broker.deliver(QUEUE, batch, channelLost),
      committed,
    });
  } finally {
    await consumer.stop();
    await outages.stop();
  }
}

function withSqlite(
  fn: (fixture: Fixture) => Promise<void>,
  options: { user?: string } = {},
): Promise<void> {
  return sqlite.with("consumer", MIGRATIONS, (store) => withConsumer(store, fn, options));
}

const ACK: Settlement = { action: "ack" };

Deno.test("startConsumer() handles a batch in one transaction with its inbox and outbox, then acks it all", async () => {
  await withSqlite(async ({ store, deliver, committed, broker }) => {
    let commits = 0;
    listenOutbox(store, () => commits++);
    const settlements = await deliver(["o1", "o2", "o3"].map((id) => delivery(cancelled(id))));
    assert.deepEqual(settlements, [ACK, ACK, ACK]);
    assert.deepEqual(await committed(), {
      effects: ["o1", "o2", "o3"],
      outbox: ["o1", "o2", "o3"],
    });
    assert.equal(commits, 1, "one commit for the batch");
    assert.deepEqual(broker.forwarded, []);
  });
});

Deno.test("eachEvent() takes the batch's locks once, with all its events, then handles them in turn", async () => {
  const calls: string[] = [];
  const handler = eachEvent<{ id: string }>((_tx, event) => {
    calls.push(`handle ${event.id}`);
    return Promise.resolve(() => void calls.push(`after ${event.id}`));
  }, {
    lock: (_tx, events) => Promise.resolve(calls.push(`lock ${events.map((e) => e.id)}`)),
  });
  await sqlite.with("consumer", MIGRATIONS, async (store) => {
    const after = await store.transaction((tx) =>
      handler(tx, ["a", "b"].map((id) => ({ event: { id }, context: testContext() })))
    );
    after.forEach((then) => then?.());
  });
  assert.deepEqual(calls, ["lock a,b", "handle a", "handle b", "after a", "after b"]);
});

Deno.test("firstOfEach() keeps the first item of each key, in order", () => {
  const events = ["o1", "o2", "o1", "o3", "o2"].map((order, at) => ({ order, at }));
  assert.deepEqual(firstOfEach(events, ({ order }) => order).map(({ at }) => at), [0, 1, 3]);
  assert.deepEqual(firstOfEach([], String), []);
});

Deno.test("startConsumer() handles a duplicate event_id once, in a batch and in a later one", async () => {
  await withSqlite(async ({ deliver, committed, lines }) => {
    const event = cancelled("o1");
    assert.deepEqual(await deliver([delivery(event), delivery(event)]), [ACK, ACK]);
    assert.deepEqual(await deliver([delivery(event)]), [ACK]);
    assert.deepEqual(await committed(), { effects: ["o1"], outbox: ["o1"] });
    assert.deepEqual(lines, ["info skipped duplicate", "info skipped duplicate"]);
  });
});

Deno.test("startConsumer() sends poison to the DLQ with the reason, and handles the rest of its batch", async () => {
  await withSqlite(async ({ deliver, committed, broker }) => {
    const { event_id: _, ...withoutId } = cancelled("o2");
    const batch = [
      delivery(cancelled("o1")),
      delivery(new TextEncoder().encode("not json")),
      delivery(withoutId),
    ];
    const settlements = await deliver(batch);
    assert.deepEqual(settlements[0], ACK);
    assert.deepEqual(settlements.slice(1).map((s) => s.action), ["dead-letter", "dead-letter"]);
    assert.deepEqual(await committed(), { effects: ["o1"], outbox: ["o1"] });
    assert.deepEqual(
      broker.forwarded.map((f) => [f.delivery, f.exchange, f.routingKey]),
      [[batch[1], DEAD_LETTER_EXCHANGE, QUEUE], [batch[2], DEAD_LETTER_EXCHANGE, QUEUE]],
    );
    assert.match(String(broker.forwarded[0].headers["x-rejected-reason"]), /JSON/);
    assert.match(String(broker.forwarded[1].headers["x-rejected-reason"]), /event_id/);
    assert.equal(broker.forwarded[0].headers["x-original-routing-key"], EventType.OrderCancelled);
  });
});

Deno.test("startConsumer() handles a failed batch one event at a time, so that only the failing event is retried", async () => {
  await withSqlite(async ({ store, deliver, committed, broker }) => {
    let commits = 0;
    listenOutbox(store, () => commits++);
    const batch = [
      delivery(cancelled("o1")),
      delivery(cancelled("fail2")),
      delivery(cancelled("o3")),
    ];
    const settlements = await deliver(batch);
    assert.deepEqual(settlements, [ACK, ACK, ACK], "the retry holds the failed one now");
    assert.deepEqual(await committed(), { effects: ["o1", "o3"], outbox: ["o1", "o3"] });
    assert.equal(broker.forwarded.length, 1);
    const [retry] = broker.forwarded;
    assert.equal(retry.delivery, batch[1]);
    assert.deepEqual([retry.exchange, retry.routingKey], [RETRY_EXCHANGE, retryQueue(QUEUE, 1000)]);
    assert.equal(retry.headers[RETRY_ATTEMPT_HEADER], 1);
    assert.match(String(retry.headers["x-last-error"]), /Cannot reach the kitchen/);
    assert.equal(commits, 2, "the batch rolled back, then o1 and o3 committed alone");
  });
});

Deno.test("startConsumer() retries with the next delay, and dead-letters after the last retry", async () => {
  await withSqlite(async ({ deliver, broker }) => {
    const again = delivery(cancelled("fail1"), { [RETRY_ATTEMPT_HEADER]: 1 });
    const last = delivery(cancelled("fail2"), { [RETRY_ATTEMPT_HEADER]: RETRY_DELAYS_MS.length });
    const settlements = await deliver([again, last]);
    assert.deepEqual(settlements[0], ACK);
    assert.equal(settlements[1].action, "dead-letter");
    const [retried, parked] = broker.forwarded;
    assert.deepEqual([retried.routingKey, retried.headers[RETRY_ATTEMPT_HEADER]], [
      retryQueue(QUEUE, 5000),
      2,
    ]);
    assert.deepEqual([parked.exchange, parked.routingKey], [DEAD_LETTER_EXCHANGE, QUEUE]);
    assert.equal(parked.headers["x-attempts"], 3);
    assert.match(String(parked.headers["x-rejected-reason"]), /^failed 3 times, last with: /);
  });
});

Deno.test("startConsumer() dead-letters at once an event whose handler says it is poison", async () => {
  await withSqlite(async ({ deliver, committed, broker }) => {
    const settlements = await deliver([delivery(cancelled("poison1")), delivery(cancelled("o2"))]);
    assert.deepEqual(settlements, [
      { action: "dead-letter", reason: "order_id names no order" },
      ACK,
    ]);
    assert.deepEqual(await committed(), { effects: ["o2"], outbox: ["o2"] });
    assert.deepEqual(broker.forwarded.map((f) => f.exchange), [DEAD_LETTER_EXCHANGE]);
  });
});

Deno.test("startConsumer() requeues what it can neither retry nor park while the broker refuses", async () => {
  await withSqlite(async ({ deliver, broker }) => {
    broker.failure = new Error("PRECONDITION_FAILED");
    const settlements = await deliver([
      delivery(cancelled("fail1")),
      delivery(new TextEncoder().encode("{")),
    ]);
    assert.deepEqual(settlements.map((s) => s.action), ["requeue", "requeue"]);
  });
});

Deno.test("startConsumer() neither parks nor retries a batch whose channel was lost: the broker delivers it again", async () => {
  await withSqlite(async ({ deliver, broker }) => {
    const lost = new AbortController();
    lost.abort();
    const settlements = await deliver(
      [delivery(cancelled("fail1")), delivery(new TextEncoder().encode("{"))],
      lost.signal,
    );
    assert.deepEqual(settlements.map((s) => s.action), ["requeue", "requeue"]);
    assert.deepEqual(broker.forwarded, []);
  });
});

Deno.test({
  name:
    "startConsumer() pauses while the disk is full, holds its batch, and handles it once there is room, spending no retry (sqlite)",
  ignore: (await tmpfsUnavailable()) !== undefined,
  fn: () =>
    withStoreOnTmpfs("consumer", MIGRATIONS, async (store, disk) => {
      await withConsumer(store, async ({ deliver, committed, broker, outages }) => {
        await disk.fill();
        const handling = deliver([delivery(cancelled("o1")), delivery(cancelled("o2"))]);
        await broker.until("the consumer to pause", () => broker.paused(QUEUE));
        assert.match(outages.reason ?? "", /database or disk is full/);
        await disk.free();
        assert.deepEqual(await handling, [ACK, ACK]);
        assert.equal(broker.paused(QUEUE), false);
        assert.deepEqual(await committed(), { effects: ["o1", "o2"], outbox: ["o1", "o2"] });
        assert.deepEqual(broker.forwarded, [], "nothing was retried or parked");
      });
    }),
});

// QUEUE is inventory's, and OrderCancelled the order service's to publish.
const AS_INVENTORY = { user: "shop-inventory" };

function from(
  orderId: string,
  userId: string | undefined,
  headers: Record<string, unknown> = {},
): Delivery {
  return testDelivery(cancelled(orderId), { type: EventType.OrderCancelled, headers, userId });
}

Deno.test("startConsumer() under per-service users handles an event from the user of the service that publishes its type", async () => {
  await withSqlite(async ({ deliver, committed }) => {
    assert.deepEqual(await deliver([from("o1", "shop-order")]), [ACK]);
    assert.deepEqual((await committed()).effects, ["o1"]);
  }, AS_INVENTORY);
});

Deno.test("startConsumer() under per-service users dead-letters an event from any other user, or from none, and changes nothing", async () => {
  await withSqlite(async ({ deliver, committed, broker }) => {
    const settlements = await deliver([
      from("o1", "shop-notification"),
      from("o2", undefined),
      // A neighbour cannot borrow the header that only the consumer's own copies are believed in.
      from("o3", "shop-notification", { [PUBLISHED_BY_HEADER]: "shop-order" }),
      from("o4", "guest"),
    ]);
    const untrusted = { action: "dead-letter", reason: UNTRUSTED_PUBLISHER };
    assert.deepEqual(settlements, [untrusted, untrusted, untrusted, untrusted]);
    assert.deepEqual(await committed(), { effects: [], outbox: [] });
    assert.deepEqual(
      broker.forwarded.map((f) => [f.exchange, f.headers[PUBLISHED_BY_HEADER]]),
      [
        [DEAD_LETTER_EXCHANGE, "shop-notification"],
        [DEAD_LETTER_EXCHANGE, ""],
        [DEAD_LETTER_EXCHANGE, "shop-notification"],
        [DEAD_LETTER_EXCHANGE, "guest"],
      ],
    );
  }, AS_INVENTORY);
});

Deno.test("startConsumer() under per-service users believes its own copy back from a retry queue by the publisher it named", async () => {
  await withSqlite(async ({ deliver, committed, broker }) => {
    await deliver([from("fail-1", "shop-order")]);
    const [retry] = broker.forwarded;
    assert.equal(retry.exchange, RETRY_EXCHANGE);
    assert.equal(retry.headers[PUBLISHED_BY_HEADER], "shop-order");
    // The copy comes back published by inventory's own user, as the broker dead-letters it.
    const own = from("o2", "shop-inventory", { [PUBLISHED_BY_HEADER]: "shop-order" });
    const forged = from("o3", "shop-inventory", { [PUBLISHED_BY_HEADER]: "shop-inventory" });
    const settlements = await deliver([own, forged]);
    assert.deepEqual(settlements[0], ACK);
    assert.deepEqual(settlements[1], { action: "dead-letter", reason: UNTRUSTED_PUBLISHER });
    assert.deepEqual((await committed()).effects, ["o2"]);
  }, AS_INVENTORY);
});

Deno.test("startConsumer() under per-service users checks nothing where the services share one broker user", async () => {
  await withSqlite(async ({ deliver, committed }) => {
    assert.deepEqual(await deliver([from("o1", undefined), from("o2", "guest")]), [ACK, ACK]);
    assert.deepEqual((await committed()).effects, ["o1", "o2"]);
  });
});
