import assert from "node:assert/strict";
import { dropShare, openRuleChain, whyNoRules } from "./network_rules.ts";

const REFUSED = await whyNoRules();
if (REFUSED) {
  console.log(`network_rules_test: this machine refuses the rules (${REFUSED}), skipped`);
}

/** Whether a TCP connection to `port` is made within `ms`. */
async function connects(port: number, ms: number): Promise<boolean> {
  const attempt = Deno.connect({ hostname: "127.0.0.1", port });
  const timer = new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms));
  const conn = await Promise.race([attempt, timer]);
  attempt.then((late) => late.close(), () => {});
  return conn !== undefined;
}

Deno.test(
  "dropShare(port, 1) drops every packet to the port until heal(), and close() leaves no chain",
  { ignore: REFUSED !== undefined },
  async () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = listener.addr as Deno.NetAddr;
    const chain = await openRuleChain([]);
    try {
      await chain.apply(dropShare(port, 1));
      assert.equal(await connects(port, 1000), false, "connected through a rule dropping all");
      await chain.heal();
      assert.equal(await connects(port, 1000), true, "no connection after heal()");
    } finally {
      await chain.close();
      listener.close();
    }
    const { stdout } = await new Deno.Command("iptables", { args: ["-w", "-S"] }).output();
    assert.ok(!new TextDecoder().decode(stdout).includes(chain.name), "the chain outlived close()");
  },
);
