/**
 * Trying on the broker what a user may or may not do, for the tests of least privilege: each
 * operation on a confirm channel of its own (a refusal closes the channel it happened on), answered
 * with the broker's refusal code or "ok".
 * @module
 */
// The raw client, not shared/broker.ts: these tests try what no service ever does.
import type amqp from "amqplib";
import { Buffer } from "node:buffer";

/** The AMQP reply code of a refused permission. */
export const ACCESS_REFUSED = 403;

/** Runs `operation` on a channel of its own; resolves with the broker's refusal code, or "ok". */
export async function attempt(
  connection: amqp.ChannelModel,
  operation: (channel: amqp.ConfirmChannel) => Promise<unknown>,
): Promise<number | "ok"> {
  const channel = await connection.createConfirmChannel();
  const closed = new Promise<never>((_, reject) => channel.once("error", reject));
  try {
    await Promise.race([operation(channel), closed]);
    await channel.close();
    return "ok";
  } catch (error) {
    return (error as { code?: number }).code ?? Promise.reject(error);
  }
}

/** An operation that publishes `{}` to `exchange` under `routingKey`, with `userId` if given. */
export function publishTo(
  exchange: string,
  routingKey: string,
  userId?: string,
): (channel: amqp.ConfirmChannel) => Promise<void> {
  return (channel) =>
    new Promise<void>((resolve, reject) =>
      channel.publish(
        exchange,
        routingKey,
        Buffer.from("{}"),
        userId ? { userId } : {},
        (error) => error ? reject(error) : resolve(),
      )
    );
}
