/**
 * Every `.dlq` and what it holds, listed and replayed with the very functions of
 * `deno task dlq` and `deno task dlq:replay`: listing returns each message to its place, and replay
 * removes a message only after the broker confirmed its republish.
 *
 * Listing takes the messages for a moment, so it runs only when a DLQ's depth changed, and never
 * beside a replay: one would not see what the other holds.
 * @module
 */
import { deadLetterQueue, type Queue, QUEUES } from "../../../shared/topology.ts";
import {
  type DeadLetter,
  listDeadLetters,
  type ReplayConnections,
  replayDeadLetters,
} from "../dlq.ts";

/** One DLQ as last listed. */
export interface DeadLetterQueue {
  /** The queue whose messages it holds, e.g. `order-placed` for `order-placed.dlq`. */
  queue: Queue;
  /** Its depth as the management API last counted it. */
  depth: number;
  /** The oldest messages, at most {@linkcode DeadLetterViewOptions.limit}. */
  letters: DeadLetter[];
}

/** Options for {@linkcode viewDeadLetters}. */
export interface DeadLetterViewOptions {
  /** The most messages shown of one DLQ. @default {50} */
  limit?: number;
}

/** What to replay: one message, one DLQ, or every DLQ. */
export interface ReplayChoice {
  queue?: Queue;
  messageId?: string;
}

/** The DLQs; see {@linkcode viewDeadLetters}. */
export interface DeadLetterView {
  readonly queues: readonly DeadLetterQueue[];
  /** Lists the DLQs whose depth in `depths` (by DLQ name) changed since they were last listed. */
  refresh(depths: ReadonlyMap<string, number>): Promise<void>;
  /** Replays the chosen messages, then lists their DLQs again; resolves with what was replayed. */
  replay(choice: ReplayChoice): Promise<DeadLetter[]>;
}

/** Watches the DLQs of every consumed queue: browsed through `tools`, replayed through `broker`. */
export function viewDeadLetters(
  connections: ReplayConnections,
  options: DeadLetterViewOptions = {},
): DeadLetterView {
  const { limit = 50 } = options;
  let queues: DeadLetterQueue[] = QUEUES.map((queue) => ({ queue, depth: 0, letters: [] }));
  // Listing and replay each hold messages for a while: one at a time.
  let turn: Promise<unknown> = Promise.resolve();
  function exclusively<T>(work: () => Promise<T>): Promise<T> {
    const result = turn.then(work);
    turn = result.catch(() => {});
    return result;
  }

  async function list(chosen: readonly Queue[], depths: ReadonlyMap<string, number>) {
    const letters = await listDeadLetters(connections.tools, { queues: chosen, limit });
    queues = queues.map((known) =>
      chosen.includes(known.queue)
        ? {
          queue: known.queue,
          depth: depths.get(deadLetterQueue(known.queue)) ?? known.depth,
          letters: letters.filter((letter) => letter.queue === known.queue),
        }
        : known
    );
  }

  return {
    get queues() {
      return queues;
    },
    refresh(depths) {
      return exclusively(async () => {
        const changed = queues.filter((known) =>
          (depths.get(deadLetterQueue(known.queue)) ?? 0) !== known.depth
        ).map((known) => known.queue);
        if (changed.length > 0) await list(changed, depths);
      });
    },
    replay(choice) {
      return exclusively(async () => {
        const chosen = choice.queue ? [choice.queue] : QUEUES;
        const replayed = await replayDeadLetters(connections, {
          queues: chosen,
          messageIds: choice.messageId ? [choice.messageId] : undefined,
        });
        const depths = new Map(queues.map((known) => [deadLetterQueue(known.queue), known.depth]));
        await list(chosen, depths);
        return replayed;
      });
    },
  };
}
