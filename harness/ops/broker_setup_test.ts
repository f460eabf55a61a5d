import assert from "node:assert/strict";
import { ccWarning } from "./broker_setup.ts";
import type { ManagementApi } from "./management_api.ts";

function brokerOf(version: string): ManagementApi {
  return ((_method: string, path: string) => {
    assert.equal(path, "/api/overview");
    return Promise.resolve({ rabbitmq_version: version });
  }) as ManagementApi;
}

Deno.test("ccWarning() warns about every RabbitMQ that lets CC headers past topic permissions", async () => {
  for (const version of ["3.10.8", "3.13.7", "4.0.0", "4.0.2", "4.0.0-rc.1"]) {
    assert.match(String(await ccWarning(brokerOf(version))), /CC\/BCC.*4\.0\.3/, version);
  }
  for (const version of ["4.0.3", "4.0.10", "4.1.0", "5.0.0"]) {
    assert.equal(await ccWarning(brokerOf(version)), undefined, version);
  }
});
