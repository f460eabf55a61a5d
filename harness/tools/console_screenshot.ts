/**
 * `deno task console:screenshot`: the console under load, as a PNG (docs/console.png).
 *
 * It starts a stack of its own (vhost, data directory, ports), the console beside it and a headless
 * Chromium on the page, then plays the backlog scenario by hand: a steady stream of orders (some
 * for food the kitchen lacks, some cancelled), inventory stopped from the page and started again
 * 15 s later, and a poison message in `order-placed.dlq`. The picture is taken once the chart shows
 * the backlog drained by half, the whole page at the width asked.
 *
 * ```sh
 * deno task console:screenshot [--out docs/console.png] [--width 1280] [--rate 12]
 * ```
 * @module
 */
import { waitFor } from "../lib/async.ts";
import { publishOrderPlaced } from "../lib/broker_probes.ts";
import { readCommandLine } from "../lib/command_line.ts";
import { placeOrder, request } from "../lib/http_probes.ts";
import { withStack } from "../lib/stack.ts";
import { createLogger } from "../../shared/log.ts";
import { launchChromium } from "../lib/chromium.ts";
import { startConsole } from "../ops/console/console.ts";
import { servicesOf } from "../ops/console/services.ts";

const MENU = ["burger", "fries", "salad", "soda", "burger", "fries", "pizza", "caviar"];

async function main(): Promise<number> {
  const line = readCommandLine(Deno.args, {
    tool: "the screenshot",
    options: { out: { type: "string" }, width: { type: "string" }, rate: { type: "string" } },
  });
  const out = String(line.values.out ?? "docs/console.png");
  const width = line.positive("width", 1280)!;
  const rate = line.positive("rate", 12)!;
  await withStack({}, async (stack) => {
    const console_ = await startConsole({
      amqpUrls: [stack.vhost.amqpUrl],
      managementUrl: stack.managementUrl,
      services: servicesOf(stack),
      log: createLogger("console", { level: "warn" }),
      port: 0,
    });
    const browser = await launchChromium({ width, height: 900 });
    try {
      const { page } = browser;
      await page.goto(console_.url);
      await publishOrderPlaced(stack, "not json", "poison-1");
      const started = Date.now();
      const seconds = () => (Date.now() - started) / 1000;
      let sent = 0;
      let stopped = false;
      let restarted = false;
      const drained = `(() => {
        const line = document.querySelector('path[data-series="order-placed ready"]');
        return Number(line?.dataset.peak) > 0 && Number(line.dataset.last) < line.dataset.peak / 2;
      })()`;
      // The stream goes on until the chart shows the backlog drained by half, then the picture is
      // taken.
      while (!restarted || !(await page.evaluate<boolean>(drained))) {
        const at = seconds();
        if (at >= 20 && !stopped) {
          stopped = true;
          await page.click('form[action="/services/inventory/stop"] button');
        }
        if (at >= 35 && !restarted) {
          restarted = true;
          await page.click('form[action="/services/inventory/start"] button');
        }
        if (at > 90) throw new Error("Cannot take the screenshot: the backlog did not drain");
        const sku = MENU[sent % MENU.length];
        const orderId = await placeOrder(stack, {
          user_id: `u${sent % 7}`,
          items: [{ sku, qty: 1 }],
        });
        if (sent % 9 === 4) {
          await request(`${stack.url("order")}/orders/${orderId}/cancel`, { method: "POST" });
        }
        sent++;
        // Paced, so that the stream is steady: the next order is due at sent / rate seconds.
        const due = started + (sent / rate) * 1000;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));
      }
      await waitFor(
        "the poison message on the page",
        () => page.evaluate(`!!document.querySelector('[data-dlq="order-placed"] li')`),
      );
      await page.evaluate(`document.querySelector('[data-dlq] details')?.setAttribute("open", "")`);
      await Deno.writeFile(out, await page.screenshot({ fullPage: true }));
      console.log(`Wrote ${out}: ${sent} orders at ${rate}/s, inventory down 15 s`);
    } finally {
      await browser.close();
      await console_.close();
    }
  });
  return 0;
}

if (import.meta.main) Deno.exit(await main());
