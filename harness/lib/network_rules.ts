/**
 * Network faults made with `iptables` on loopback, between the nodes of a private cluster or on a
 * harness proxy's port: every
 * rule lives in one chain of this process's own (`CAMPUS_FOOD_PART_<pid>`), jumped to from
 * `OUTPUT` for loopback packets only, and the chain is flushed and deleted on `close()`, on Ctrl-C
 * and SIGTERM, and at exit. Nothing outside that chain is changed.
 *
 * Each node runs as a system user of its own, so `-m owner --uid-owner` matches exactly the packets
 * a node sends. Every connection a node takes part in also gets that node's bit in its connection
 * mark, so a connection between two nodes (their Erlang distribution link) carries both bits, and a
 * rule can drop one direction of it or both, whichever node opened it.
 * @module
 */
import { cleanUpOnInterrupt } from "./interrupt.ts";

/** What a rule needs to know of a node. */
export interface RuleNode {
  /** The uid the node runs as. */
  uid: number;
  amqpPort: number;
}

/** One fault: the `iptables` rules that make it, each an argument list after `-A <chain>`. */
export type FaultRules = readonly (readonly string[])[];

/** The chain of this process and the faults in it; see {@linkcode openRuleChain}. */
export interface RuleChain {
  /** The chain's name. */
  readonly name: string;
  /** Appends `rules` to the chain; they hold until {@linkcode RuleChain.heal}. */
  apply(rules: FaultRules): Promise<void>;
  /** Removes every fault rule, keeping the chain and its connection marks. */
  heal(): Promise<void>;
  /** Removes the jump from `OUTPUT`, flushes and deletes the chain. Safe to call twice. */
  close(): Promise<void>;
}

/** The name of this process's chain: unique to the process, and clearly the harness's. */
export function chainName(): string {
  return `CAMPUS_FOOD_PART_${Deno.pid}`;
}

/**
 * Why this machine refuses the rules {@linkcode openRuleChain} makes (no `iptables`, no
 * permission, no `owner` or `connmark` match), or undefined when it takes them: found by making
 * the chain with one rule of each kind and deleting it.
 */
export async function whyNoRules(): Promise<string | undefined> {
  const name = `${chainName()}_P`;
  try {
    await iptables(["-N", name]);
  } catch (error) {
    return (error as Error).message;
  }
  try {
    await iptables(["-A", name, ...markRule(0, 0)]);
    await iptables([
      "-A",
      name,
      ...isolate([{ uid: 0, amqpPort: 1 }, { uid: 1, amqpPort: 2 }], 0)[0],
    ]);
    await iptables(["-A", name, ...dropShare(1, 0.01)[0]]);
    return undefined;
  } catch (error) {
    return (error as Error).message;
  } finally {
    await iptables(["-F", name]).catch(() => {});
    await iptables(["-X", name]).catch(() => {});
  }
}

/**
 * Makes this process's chain, with a rule marking the connections of each node (by the uid it
 * runs as, in `uids`, their order the nodes' indexes in the fault rules; none where the faults are
 * on ports only), and jumps to it from `OUTPUT` for loopback packets. Open it before the nodes
 * start, so that their links carry their marks from the first packet. Always `close()` it; Ctrl-C and exit close it too.
 * @throws {Error} with `iptables`' own words when the machine refuses the chain
 */
export async function openRuleChain(uids: readonly number[]): Promise<RuleChain> {
  const name = chainName();
  const jump = ["OUTPUT", "-o", "lo", "-j", name];
  let faultRules = 0;
  let closed = false;
  async function close(): Promise<void> {
    if (closed) return;
    closed = true;
    forget();
    globalThis.removeEventListener("unload", closeNow);
    await iptables(["-D", ...jump]).catch(() => {});
    await iptables(["-F", name]).catch(() => {});
    await iptables(["-X", name]).catch(() => {});
  }
  /** The last resort when the process exits without closing: the rules would outlive it. */
  function closeNow(): void {
    if (closed) return;
    closed = true;
    for (const args of [["-D", ...jump], ["-F", name], ["-X", name]]) {
      new Deno.Command("iptables", { args: ["-w", ...args], stdout: "null", stderr: "null" })
        .outputSync();
    }
  }
  await iptables(["-N", name]);
  const forget = cleanUpOnInterrupt(close);
  globalThis.addEventListener("unload", closeNow);
  try {
    for (const [index, uid] of uids.entries()) {
      await iptables(["-A", name, ...markRule(uid, index)]);
    }
    await iptables(["-I", ...jump.slice(0, 1), "1", ...jump.slice(1)]);
  } catch (error) {
    await close();
    throw error;
  }
  return {
    name,
    async apply(rules) {
      for (const rule of rules) {
        await iptables(["-A", name, ...rule]);
        faultRules++;
      }
    },
    async heal() {
      // The fault rules come after the one mark rule per node; delete from the end.
      for (; faultRules > 0; faultRules--) {
        await iptables(["-D", name, String(uids.length + faultRules)]);
      }
    },
    close,
  };
}

/** The bit of node `index` in a connection's mark. */
function bitOf(index: number): number {
  return 1 << (8 + index);
}

function hex(value: number): string {
  return `0x${value.toString(16)}`;
}

/** Sets node `index`'s bit in the mark of every connection it sends on. */
function markRule(uid: number, index: number): string[] {
  return [
    "-m",
    "owner",
    "--uid-owner",
    String(uid),
    "-j",
    "CONNMARK",
    "--or-mark",
    hex(bitOf(index)),
  ];
}

/** Every packet of a connection between nodes `a` and `b`, whichever sends it. */
function betweenRule(a: number, b: number): string[] {
  const both = hex(bitOf(a) | bitOf(b));
  return ["-m", "connmark", "--mark", `${both}/${both}`, "-j", "DROP"];
}

/**
 * Node `index` cut off from every other node, both ways: every packet on a link between it and
 * another node is dropped, while clients (the services, the CLI, the management API's users) still
 * reach it and it answers them.
 */
export function isolate(nodes: readonly RuleNode[], index: number): FaultRules {
  return nodes.flatMap((_, other) => other === index ? [] : [betweenRule(index, other)]);
}

/**
 * What node `from` sends to node `to` dropped, and nothing else: `to`'s packets still reach
 * `from`. Both ends see their link fall silent at different moments, as in a one-way cut.
 */
export function cutOneWay(nodes: readonly RuleNode[], from: number, to: number): FaultRules {
  const both = hex(bitOf(from) | bitOf(to));
  return [[
    "-m",
    "owner",
    "--uid-owner",
    String(nodes[from].uid),
    "-m",
    "connmark",
    "--mark",
    `${both}/${both}`,
    "-j",
    "DROP",
  ]];
}

/**
 * Node `index`'s answers on its AMQP port dropped: its clients' packets arrive and are never
 * answered, nor refused, as when a network drops them. Its links to the other nodes still work.
 */
export function silenceAmqp(nodes: readonly RuleNode[], index: number): FaultRules {
  return [[
    "-p",
    "tcp",
    "-m",
    "owner",
    "--uid-owner",
    String(nodes[index].uid),
    "--sport",
    String(nodes[index].amqpPort),
    "-j",
    "DROP",
  ]];
}

/**
 * A `share` (0 to 1) of the packets to and from `port` dropped at random, each on its own, as a
 * lossy link drops them: TCP resends them after its timeouts, which is what the loss costs.
 */
export function dropShare(port: number, share: number): FaultRules {
  return ["--dport", "--sport"].map((direction) => [
    "-p",
    "tcp",
    direction,
    String(port),
    "-m",
    "statistic",
    "--mode",
    "random",
    "--probability",
    String(share),
    "-j",
    "DROP",
  ]);
}

/** Runs `iptables -w` (waiting for the lock others may hold); rejects with its words. */
async function iptables(args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("iptables", {
      args: ["-w", ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    throw new Error(`Cannot run iptables: ${(error as Error).message}`);
  }
  if (!output.success) {
    const words = new TextDecoder().decode(output.stderr).trim().split("\n")[0];
    throw new Error(`Cannot run iptables ${args.join(" ")}: ${words}`);
  }
}
