import assert from "node:assert/strict";
import { SERVICE_RUN_FLAGS, SERVICES } from "../lib/service_process.ts";

const { tasks } = JSON.parse(
  await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
) as { tasks: Record<string, string> };

Deno.test("deno.json runs and compiles each service with the flags the harness measures", () => {
  for (const name of SERVICES) {
    assert.equal(tasks[name], `deno run ${SERVICE_RUN_FLAGS.join(" ")} ${name}/main.ts`);
    assert.ok(
      tasks.compile.includes(
        `deno compile ${SERVICE_RUN_FLAGS.join(" ")} --output dist/${name} ${name}/main.ts`,
      ),
      `the compile task builds dist/${name} with ${SERVICE_RUN_FLAGS.join(" ")}`,
    );
  }
});
