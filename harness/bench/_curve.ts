/**
 * The latency curve (`deno task bench --curve`): the offered rate swept upwards, open loop, a few
 * seconds a step on one stack, until the system falls behind; at each step p50/p95/p99 POST →
 * decision and POST → webhook delivered, and the CPU each order cost. From the steps, the knee
 * (where latency leaves the floor) and the highest rate held with p99 under 100 ms
 * (`_curve_figures.ts`). The method of RabbitMQ's PerfTest, with orders instead of messages.
 * @module
 */
import { sleep } from "../lib/async.ts";
import { startWebhookReceiver } from "../lib/webhook_receiver.ts";
import { type BenchConfig, cpuMsPer, startCpuMeter, withBenchStack } from "./_stack.ts";
import { type MeasureOptions, WARM_UP_ORDERS, withWebhook } from "./_measure.ts";
import {
  countSeen,
  type OrderOutcomes,
  sendOpenLoop,
  type SentOrders,
  watchOrderOutcomes,
} from "./_open_loop.ts";
import { watchDeliveries } from "./_webhook.ts";
import {
  type CurveResult,
  type CurveStep,
  DEFAULT_CURVE_RATES,
  findKnee,
  HELD_P99_MS,
  highestHeldUnder,
  nextRate,
  STEP_DRAIN_MS,
  summarizeStep,
} from "./_curve_figures.ts";

/** Options for {@linkcode measureCurve}. */
export interface CurveOptions extends MeasureOptions {
  /**
   * The offered rates, orders/s, in the order swept; the sweep ends at the first step not held.
   * @default {DEFAULT_CURVE_RATES and on by nextRate() until a step is not held}
   */
  rates?: readonly number[];
  /** Seconds each step sends orders. @default {5} */
  stepSeconds?: number;
}

/**
 * Sweeps the offered rate on one stack of `config`, with notification delivering to a local
 * webhook receiver that verifies every signature: each step sends `rate × stepSeconds` orders open
 * loop, then waits until every accepted order is decided and delivered before the next step
 * starts, so that no step inherits the last one's backlog. The sweep ends after the first step
 * that is not held (decisions fall behind the offered rate, POSTs are refused, or p99 explodes).
 */
export async function measureCurve(
  config: BenchConfig,
  options: CurveOptions = {},
): Promise<CurveResult> {
  const { log = () => {}, memory = { rssMb: {}, privateMb: {} }, stepSeconds = 5 } = options;
  const { rates } = options;
  if (rates?.length === 0 || rates?.some((rate) => !(rate > 0))) {
    throw new RangeError(
      `Cannot sweep the rate as rates must be positive numbers: current value is ${rates}`,
    );
  }
  const receiver = startWebhookReceiver();
  try {
    return await withBenchStack(
      withWebhook({ ...config, webhook: receiver }),
      { services: ["order", "inventory", "notification"], memory },
      async (bench) => {
        const { stack } = bench;
        const services = {
          order: stack.services.order!,
          notification: stack.services.notification!,
        };
        const outcomes = watchOrderOutcomes(services, watchDeliveries(receiver));
        const orderUrl = stack.url("order");
        let first = 0;
        // Start-up and JIT are not the subject: orders first, not counted, as end to end does.
        const warmUp = await sendOpenLoop(orderUrl, { rate: 100, count: WARM_UP_ORDERS, first });
        first += WARM_UP_ORDERS;
        await drained(warmUp, outcomes);
        const steps: CurveStep[] = [];
        let rate: number | undefined = rates?.[0] ?? DEFAULT_CURVE_RATES[0];
        while (rate !== undefined) {
          const count = Math.max(1, Math.round(rate * stepSeconds));
          log(`curve: ${rate} orders/s for ${stepSeconds} s`);
          const stopCpuMeter = await startCpuMeter([
            stack.services.order!,
            ...bench.inventories(),
            stack.services.notification!,
          ], { databaseUrl: bench.databaseUrl });
          const sent = await sendOpenLoop(orderUrl, { rate, count, first });
          first += count;
          const complete = await drained(sent, outcomes);
          const cpu = await stopCpuMeter();
          const step = summarizeStep(rate, sent, outcomes, { complete });
          step.cpuMsPerOrder = cpuMsPer(cpu, Math.max(1, step.orders));
          steps.push(step);
          log(
            `curve: ${rate}/s → decided ${step.decidedPerSec}/s, p99 POST → decision ` +
              `${step.decision.p99} ms${step.held ? "" : `; fell behind: ${step.fellBehind}`}`,
          );
          if (!step.held) break;
          rate = rates ? rates[steps.length] : nextRate(rate);
          // The broker and the services settle (retention, the relay's last rounds) between steps.
          await sleep(500);
        }
        if (receiver.received.some((r) => !r.valid)) {
          throw new Error("Cannot trust the curve as webhook signatures failed");
        }
        return {
          stepSeconds,
          webhook: true,
          steps,
          kneePerSec: findKnee(steps),
          heldUnder100MsPerSec: highestHeldUnder(steps, HELD_P99_MS),
        };
      },
    );
  } finally {
    await receiver.close();
  }
}

/**
 * Waits until every order of `sent` is decided and delivered; false when some were not within
 * {@linkcode STEP_DRAIN_MS}: the system is that far behind.
 */
async function drained(
  sent: SentOrders,
  outcomes: OrderOutcomes,
): Promise<boolean> {
  const deadline = Date.now() + STEP_DRAIN_MS;
  const total = sent.sentAtMs.size;
  while (Date.now() < deadline) {
    outcomes.collect();
    if (
      countSeen(sent.sentAtMs, outcomes.decidedAt) === total &&
      countSeen(sent.sentAtMs, outcomes.deliveredAt()) === total
    ) {
      return true;
    }
    await sleep(100);
  }
  return false;
}
