/**
 * `deno task dev` against the broker: it prints the console's address and no password, the console
 * stops and starts a service without the others going down, and Ctrl-C ends everything with exit
 * code 0.
 */
import assert from "node:assert/strict";
import { stripVTControlCharacters } from "node:util";
import { waitFor } from "../lib/async.ts";
import { createVhost } from "../ops/management_api.ts";
import { keepDeadLettering } from "../lib/broker_check.ts";

const integration = { sanitizeOps: false, sanitizeResources: false };

Deno.test(
  "deno task dev runs the console, which stops and starts a service, against the broker",
  integration,
  async () => {
    await keepDeadLettering("deno task dev");
    const vhost = await createVhost();
    const dataDir = await Deno.makeTempDir({ prefix: "campus-food-dev-" });
    const dev = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", new URL("./dev.ts", import.meta.url).pathname],
      env: {
        AMQP_URL: vhost.amqpUrl,
        DATA_DIR: dataDir,
        ORDER_PORT: "0",
        INVENTORY_PORT: "0",
        NOTIFICATION_PORT: "0",
        CONSOLE_PORT: "0",
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output: string[] = [];
    const reading = dev.stdout.pipeThrough(new TextDecoderStream()).pipeTo(
      new WritableStream({ write: (chunk) => void output.push(chunk) }),
    );
    // Without the colours: what a person reads.
    const printed = () => stripVTControlCharacters(output.join(""));
    const errors = new Response(dev.stderr).text();
    try {
      const url = await waitFor(
        "dev to print the console's address",
        () => /console +│ open (http:\/\/\S+)/.exec(printed())?.[1],
      );
      // The console runs in dev's process and logs through dev's printer: it too hides passwords.
      const connected = await waitFor(
        "the console's connected line",
        () => /console +│ .*connected to broker .*/.exec(printed())?.[0],
      );
      assert.match(connected, /url=amqp:\/\/guest:\*\*\*@/);
      assert.ok(!printed().includes("guest:guest@"), "dev prints no broker password");
      const state = async (name: string) =>
        new RegExp(`data-service="${name}" data-state="([a-z ]+)"`)
          .exec(await (await fetch(url)).text())?.[1];
      await waitFor(
        "every service ready",
        async () =>
          (await Promise.all(["order", "inventory", "notification"].map(state)))
            .every((s) => s === "ready"),
      );

      const control = (action: string) =>
        fetch(new URL(`/services/inventory/${action}`, url), {
          method: "POST",
          headers: { accept: "application/json", origin: new URL(url).origin },
        });
      assert.equal((await control("stop")).status, 200);
      await waitFor(
        "inventory stopped on the page",
        async () => await state("inventory") === "stopped",
      );
      assert.equal(await state("order"), "ready", "the others keep running");
      assert.equal((await control("start")).status, 200);
      await waitFor("inventory ready again", async () => await state("inventory") === "ready");
      assert.match(printed(), /stopping service name=inventory who=127\.0\.0\.1/);
    } finally {
      try {
        dev.kill("SIGINT");
      } catch {
        // It ended by itself: its exit code says how.
      }
      const { code } = await dev.status;
      await reading;
      await vhost.delete();
      await Deno.remove(dataDir, { recursive: true });
      assert.equal(code, 0, await errors);
    }
  },
);
