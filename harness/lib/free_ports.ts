/**
 * Ports for the private servers a run starts (broker nodes, a PostgreSQL server).
 * @module
 */

/**
 * `count` distinct ports that nothing listens on, below Linux's ephemeral range (32768 and up,
 * where an outgoing connection may take one before the node binds it, and where the CLI tools
 * listen from 35672) and clear of the machine broker's 5672, 15672 and 25672.
 */
export function freePorts(count: number): number[] {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count; attempt++) {
    if (attempt > 1_000) throw new Error(`Cannot find ${count} free ports between 20000 and 32000`);
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (ports.includes(port) || port === 25_672) continue;
    try {
      Deno.listen({ hostname: "0.0.0.0", port }).close();
      ports.push(port);
    } catch {
      // Taken: try another.
    }
  }
  return ports;
}
