/**
 * `deno task test:network`, short: 100 ms ± 20 ms and 2 % loss on the broker link, and 1 % loss on
 * the database link where PostgreSQL answers, 5 s at 10 orders/s each, against the broker; where
 * the machine refuses the loss rules, 200 ms ± 50 ms and 50 ms instead. Plain pass only.
 */
import assert from "node:assert/strict";
import { whyNoRules } from "../lib/network_rules.ts";
import { plainPassOnly } from "../lib/secure_mode.ts";
import { INTEGRATION } from "../lib/stack.ts";
import { postgresUnavailable } from "../../shared/testing/stores.ts";
import { assertPasses } from "./_testing.ts";
import { NETWORK_SETTINGS, runNetwork, settingsOfLink } from "./network.ts";

const LOSS = await whyNoRules() === undefined;
const KEYS = [
  LOSS ? "broker_100ms_jitter_20ms_loss_2pct" : "broker_200ms_jitter_50ms",
  ...(await postgresUnavailable() ? [] : [LOSS ? "database_loss_1pct" : "database_50ms"]),
];
const SETTINGS = NETWORK_SETTINGS.filter((s) => KEYS.includes(s.key));

Deno.test(
  "runNetwork() loses, doubles and dead-letters nothing under latency, jitter and loss on the broker and database links, and reports what each cost, against the broker",
  { ...INTEGRATION, ignore: !plainPassOnly("network_test") },
  async () => {
    const result = await assertPasses(
      (log) => runNetwork({ seconds: 5, rate: 10, settings: SETTINGS, log }),
      KEYS.flatMap((key) =>
        ["decided_per_s", "p50_ms", "p99_ms", "post_p99_ms", "reconnects"].map((figure) =>
          `${key}_${figure}`
        )
      ),
    );
    for (const { key, latency } of SETTINGS) {
      assert.equal(result.figures[`${key}_accepted`], 50, `${key}: every order accepted`);
      assert.equal(result.figures[`${key}_lost`], 0);
      assert.equal(result.figures[`${key}_doubled`], 0);
      assert.equal(result.figures[`${key}_dead_lettered`], 0);
      if (!latency) continue;
      // The latency was really there: a decision takes at least one round trip over the link.
      const roundTripMs = 2 * (latency.ms - (latency.jitterMs ?? 0));
      assert.ok(
        Number(result.figures[`${key}_p50_ms`]) >= roundTripMs,
        `${key}: p50 ${
          result.figures[`${key}_p50_ms`]
        } ms, below one round trip (${roundTripMs} ms)`,
      );
    }
  },
);

Deno.test("settingsOfLink() keeps the baseline and that link's settings, in the full run's order", () => {
  assert.deepEqual(settingsOfLink("database").map((s) => s.key), [
    "baseline",
    "database_50ms",
    "database_200ms_jitter_50ms",
    "database_loss_1pct",
    "database_loss_5pct",
  ]);
  const broker = settingsOfLink("broker");
  assert.equal(broker[0].key, "baseline");
  assert.ok(broker.slice(1).every((s) => s.link === "broker"), broker.map((s) => s.key).join());
  assert.equal(broker.length, NETWORK_SETTINGS.length - 4);
});
