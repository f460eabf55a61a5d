/**
 * The console in a real browser (headless Chromium over the DevTools protocol), against a stack of
 * the real services on its own vhost: what a person does on the page, the page shows happening.
 */
import assert from "node:assert/strict";
import { waitFor } from "../../lib/async.ts";
import { placeOrder } from "../../lib/http_probes.ts";
import { HARNESS_JWT_SECRET, harnessToken } from "../../lib/secure_mode.ts";
import { INTEGRATION, withStack } from "../../lib/stack.ts";
import type { LogFields, Logger } from "../../../shared/log.ts";
import {
  type BrowserPage,
  CHROMIUM_HINT,
  findChromium,
  launchChromium,
} from "../../lib/chromium.ts";
import { startConsole } from "./console.ts";
import { servicesOf } from "./services.ts";

// Without a browser the test is skipped with a line saying so; under CI it runs, and fails.
const missing = !Deno.env.get("CI") && !findChromium();
if (missing) console.log(`console test: ${CHROMIUM_HINT}; the browser test is skipped`);

/** A logger that keeps each line's message and fields, so that the test can see who asked. */
function keepingLogger(): { log: Logger; logged: Array<LogFields & { msg: string }> } {
  const logged: Array<LogFields & { msg: string }> = [];
  const keep = (msg: string, fields: LogFields = {}) => void logged.push({ msg, ...fields });
  return { log: { debug: keep, info: keep, warn: keep, error: keep }, logged };
}

/** Waits until `expression`, evaluated in the page, is true or a value; returns that value. */
function seen<T>(page: BrowserPage, what: string, expression: string, timeoutMs = 20_000) {
  return waitFor(what, () => page.evaluate<T>(expression), { timeoutMs });
}

const row = (orderId: string) => `document.querySelector('tr[data-order-id="${orderId}"]')`;
const depthPath = `document.querySelector('path[data-series="order-placed ready"]')`;
const parked = `document.querySelectorAll('[data-dlq="order-confirmed"] li[data-message-id]')`;

Deno.test({
  name:
    "console places an order, shows a backlog rise and drain, and replays dead letters, in a browser against the broker",
  ignore: missing,
  ...INTEGRATION,
  fn: async () => {
    // Secure with HARNESS_SECURE=1: the services and the console then check bearer tokens.
    await withStack({
      env: { RETRY_DELAYS: "50ms" },
      // Notification fails every outcome at first, so that each lands in order-confirmed.dlq.
      serviceEnv: { notification: { FAULT_TRANSIENT_RATE: "1" } },
    }, async (stack) => {
      const { log, logged } = keepingLogger();
      // The operator's admin token (typed into the sign-in page) and the console's own (CONSOLE_TOKEN).
      const [operator, reader] = stack.secure
        ? await Promise.all([
          harnessToken("operator", { role: "admin" }),
          harnessToken("console", { role: "admin" }),
        ])
        : [];
      const console_ = await startConsole({
        amqpUrls: [stack.amqpUrl],
        managementUrl: stack.managementUrl,
        services: servicesOf(stack),
        retryDelaysMs: [50],
        auth: stack.secure ? { jwtSecret: HARNESS_JWT_SECRET } : undefined,
        token: reader,
        log,
        port: 0,
      });
      const browser = await launchChromium();
      try {
        const { page } = browser;
        await page.goto(console_.url);
        if (operator) {
          // The console shows nothing until an admin signs in; the browser keeps the token in a
          // cookie, so that it survives a reload and rides with the page's live updates.
          await page.type("#token", operator);
          await page.click("form.login button");
          await seen(page, "the page after signing in", `document.getElementById("live") !== null`);
          await page.goto(console_.url);
        }
        await seen(
          page,
          "the page to go live",
          `document.getElementById("live").textContent === "live"`,
        );

        // An order placed through the form becomes CONFIRMED in place.
        await page.type('form.place input[name="sku"]', "burger");
        await page.type('form.place input[name="qty"]', "2");
        await page.click("form.place button");
        const orderId = await seen<string>(
          page,
          "the form's answer",
          `/Order (\\w+) accepted/.exec(document.getElementById("answer").textContent)?.[1]`,
        );
        await seen(page, "the order CONFIRMED", `${row(orderId)}?.dataset.status === "CONFIRMED"`);
        await seen(page, "its outcome parked in the DLQ panel", `${parked}.length === 1`);

        // Inventory stopped from the page: orders pile up in order-placed, and drain once it starts.
        await page.click('form[action="/services/inventory/stop"] button');
        await seen(
          page,
          "inventory stopped",
          `document.querySelector('[data-service="inventory"]').dataset.state === "stopped"`,
        );
        for (let i = 0; i < 5; i++) {
          await placeOrder(stack, { user_id: "u2", items: [{ sku: "fries", qty: 1 }] });
        }
        await seen(
          page,
          "order-placed's depth rising on the chart",
          `Number(${depthPath}.dataset.last) === 5`,
        );
        await page.click('form[action="/services/inventory/start"] button');
        await seen(
          page,
          "order-placed's depth falling on the chart",
          `${depthPath}.dataset.last === "0" && ${depthPath}.dataset.peak === "5"`,
        );
        await seen(page, "all six outcomes parked", `${parked}.length === 6`);

        // The fix: notification without the fault. Then one replay by its button, then the rest.
        await stack.stop("notification");
        await stack.start("notification", { FAULT_TRANSIENT_RATE: "0" });
        await page.click(`[data-dlq] li[data-order-id="${orderId}"] form button`);
        await seen(
          page,
          "the replayed outcome handled",
          `${row(orderId)}.dataset.notified === "order_confirmed"`,
        );
        assert.equal(await page.evaluate(`${parked}.length`), 5, "the other five stay parked");
        await page.click('form[action="/dead-letters/replay"]:not(:has(input)) button');
        await seen(
          page,
          "every DLQ empty",
          `document.getElementById("dead-letters").textContent.includes("Every .dlq is empty")`,
        );
        await seen(
          page,
          "every order told",
          `[...document.querySelectorAll("tr[data-order-id]")].every((tr) => tr.dataset.notified === "order_confirmed") && document.querySelectorAll("tr[data-order-id]").length === 6`,
        );

        assert.deepEqual(page.errors, [], "the page threw nothing");
        // A stop, a start and a replay are logged with who asked, and whose token it was.
        const sub = operator ? "operator" : undefined;
        for (const msg of ["stopping service", "starting service", "replayed dead letters"]) {
          assert.ok(
            logged.some((line) => line.msg === msg && line.who === "127.0.0.1" && line.sub === sub),
            `the console logged "${msg}" with who=127.0.0.1 sub=${sub}`,
          );
        }
        const activity = await page.evaluate<string>(
          `document.getElementById("activity").textContent`,
        );
        assert.match(activity, /stopped inventory by 127\.0\.0\.1/);
        assert.match(activity, /replayed 5 from every DLQ by 127\.0\.0\.1/);
      } finally {
        await browser.close();
        await console_.close();
      }
    });
  },
});
