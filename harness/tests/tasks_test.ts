import assert from "node:assert/strict";
import { SERVICE_RUN_FLAGS, serviceEnvFile, SERVICES } from "../lib/service_process.ts";

const { tasks } = JSON.parse(
  await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
) as { tasks: Record<string, string> };

Deno.test("deno.json runs and compiles each service with the flags the harness measures", () => {
  for (const name of SERVICES) {
    const flags = [...SERVICE_RUN_FLAGS, `--env-file=${serviceEnvFile(name)}`].join(" ");
    assert.equal(tasks[name], `deno run ${flags} ${name}/main.ts`);
    assert.ok(
      tasks.compile.includes(`deno compile ${flags} --output dist/${name} ${name}/main.ts`),
      `the compile task builds dist/${name} with ${flags}`,
    );
  }
});
