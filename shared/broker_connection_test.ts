import assert from "node:assert/strict";
import {
  BrokerConnection,
  type BrokerConnectionOptions,
  type BrokerLink,
} from "./broker_connection.ts";
import { backoffDelayMs } from "./backoff.ts";
import { EXCHANGE, Queue } from "./topology.ts";
import { eventually, FakeAmqp, fakeBrokerState } from "./testing/fake_channel.ts";
import { recordingLogger } from "./testing/recording_logger.ts";

const NODES = ["amqp://a:5672", "amqp://b:5672", "amqp://c:5672"];

/** A connection over `amqp` whose hooks record what they were asked to do. */
function connectTo(
  amqp: FakeAmqp,
  urls: string | readonly string[],
  options: Partial<BrokerConnectionOptions<string>> = {},
) {
  const { log, lines } = recordingLogger();
  const events: string[] = [];
  const fatal: Error[] = [];
  const connection = new BrokerConnection<string>(urls, {
    log,
    connectionName: "test",
    initialDelayMs: 20,
    maxDelayMs: 80,
    replyTimeoutMs: 1000,
    connect: amqp.connect,
    onFatal: (error) => fatal.push(error),
    hooks: {
      open: (link: BrokerLink) => Promise.resolve(`publisher on ${link.node}`),
      attach: (link: BrokerLink) => Promise.resolve(void events.push(`attach ${link.node}`)),
      lost: () => void events.push("lost"),
      close: (opened: string) => Promise.resolve(void events.push(`close ${opened}`)),
    },
    ...options,
  });
  return { connection, lines, events, fatal };
}

Deno.test("a connection opens, declares the topology, then attaches the consumers", async () => {
  const amqp = new FakeAmqp();
  const { connection, lines, events } = connectTo(amqp, "amqp://campus-food-order@a:5672");
  assert.equal(connection.user, "campus-food-order");
  const current = await eventually("a connection", () => connection.current);
  assert.equal(current.opened, "publisher on a:5672");
  assert.deepEqual(events, ["attach a:5672"]);
  assert.ok(amqp.broker.calls.includes(`assertExchange ${EXCHANGE}`));
  assert.ok(amqp.broker.calls.includes(`assertQueue ${Queue.orderPlaced}`));
  assert.ok(new URL(amqp.attempts[0]).searchParams.get("heartbeat"), "a heartbeat is asked for");
  await eventually("the line", () => lines.includes("info connected to broker"));
  await connection.close();
  assert.deepEqual(events, ["attach a:5672", "close publisher on a:5672", "lost"]);
  assert.equal(amqp.connections[0].closed, true);
  assert.equal(connection.current, undefined);
});

Deno.test("after a loss the next node is tried first", async () => {
  const amqp = new FakeAmqp();
  const { connection, lines, events } = connectTo(amqp, NODES);
  const first = await eventually("a connection", () => connection.current);
  amqp.connections[0].drop();
  const second = await eventually(
    "another",
    () => connection.current !== first && connection.current,
  );
  assert.notEqual(second.link.node, first.link.node);
  assert.deepEqual(amqp.attempts.map((url) => new URL(url).host), [
    first.link.node,
    second.link.node,
  ]);
  assert.ok(lines.includes("warn lost broker connection, reconnecting"));
  await eventually("the line", () => lines.includes("info reconnected to broker"));
  assert.ok(events.includes("lost"), "the consumers let go of the lost link's deliveries");
  await connection.close();
});

Deno.test("reconnecting rotates through the nodes and backs off after each round", async () => {
  const tried: Array<{ host: string; at: number }> = [];
  const amqp = new FakeAmqp({
    refuse(url) {
      tried.push({ host: new URL(url).host, at: performance.now() });
      return new Error("connect ECONNREFUSED");
    },
  });
  const { connection, lines } = connectTo(amqp, NODES);
  await eventually("five rounds", () => tried.length >= 5 * NODES.length, 10_000);
  const rounds = [0, 1, 2, 3, 4].map((round) =>
    tried.slice(round * NODES.length, (round + 1) * NODES.length)
  );
  const order = rounds[0].map((attempt) => attempt.host);
  assert.deepEqual(new Set(order).size, NODES.length, "each node once a round");
  for (const round of rounds) assert.deepEqual(round.map((attempt) => attempt.host), order);
  for (let round = 1; round < rounds.length; round++) {
    const waited = rounds[round][0].at - rounds[round - 1].at(-1)!.at;
    const least = backoffDelayMs(round, { initialDelayMs: 20, maxDelayMs: 80, exact: true }) / 2;
    assert.ok(waited >= least - 2, `round ${round} waited ${waited} ms, less than ${least}`);
  }
  assert.equal(
    lines.filter((line) => line === "warn cannot reach broker, retrying").length,
    1,
    "one warning for the whole streak",
  );
  assert.match(connection.lastError ?? "", /^[abc]:5672: connect ECONNREFUSED$/);
  amqp.refuse = () => undefined;
  await eventually("a connection", () => connection.current);
  assert.ok(lines.includes("info connected to broker"));
  assert.ok(lines.includes("info reached the broker again"));
  assert.equal(connection.lastError, undefined);
  await connection.close();
});

Deno.test("a broker certificate that is not trusted stops the connection for good", async () => {
  const amqp = new FakeAmqp({
    refuse: () => new Error("unable to verify the first certificate"),
  });
  const { connection, lines, fatal } = connectTo(amqp, NODES);
  await eventually("the fatal error", () => fatal.length === 1);
  await connection.close();
  assert.equal(amqp.attempts.length, 1);
  assert.match(fatal[0].message, /unable to verify/);
  assert.ok(
    lines.some((line) => /^error Cannot connect .* its TLS certificate is not trusted/.test(line)),
  );
});

Deno.test("a queue declared with other arguments is an error logged once, not an outage", async () => {
  const broker = fakeBrokerState((call) =>
    call === `assertQueue ${Queue.orderPlaced}` ? 406 : undefined
  );
  const amqp = new FakeAmqp({ broker });
  const { connection, lines } = connectTo(amqp, NODES);
  await eventually("two rounds", () => amqp.attempts.length >= 2 * NODES.length);
  await connection.close();
  const errors = lines.filter((line) => line.startsWith("error Cannot declare queue"));
  assert.equal(errors.length, 1);
  assert.ok(!lines.includes("warn cannot reach broker, retrying"));
  assert.equal(connection.current, undefined);
  assert.ok(amqp.connections.every((opened) => opened.closed), "each attempt is given up");
});

Deno.test("a failed set-up gives the connection up and tries again", async () => {
  const amqp = new FakeAmqp();
  let attaches = 0;
  const { connection } = connectTo(amqp, NODES, {
    hooks: {
      open: () => Promise.resolve("publisher"),
      attach: () => attaches++ === 0 ? Promise.reject(new Error("no channel")) : Promise.resolve(),
      lost: () => {},
      close: () => Promise.resolve(),
    },
  });
  await eventually("a connection that lasts", () => attaches === 2 && connection.current);
  assert.equal(amqp.connections[0].closed, true);
  assert.equal(amqp.connections[1].closed, false);
  await connection.close();
});

Deno.test("close() during an attempt does not wait for it", async () => {
  const amqp = new FakeAmqp();
  const never = new Promise<never>(() => {});
  const { connection } = connectTo(amqp, NODES, { connect: () => never });
  await connection.close();
  assert.equal(connection.current, undefined);
});
