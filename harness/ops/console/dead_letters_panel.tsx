/**
 * The DLQs panel: each message with its reason, attempts and body, and a form to replay it, its
 * DLQ, or every DLQ.
 * @module
 */
import type { Snapshot } from "./live.ts";

/** Every DLQ that holds something, message by message. */
export function DeadLetters({ snapshot }: { snapshot: Snapshot }) {
  const parked = snapshot.deadLetters.filter((dlq) => dlq.depth > 0 || dlq.letters.length > 0);
  if (parked.length === 0) return <p class="hint">Every .dlq is empty.</p>;
  return (
    <>
      <ReplayButton label="Replay every DLQ" />
      {parked.map(({ queue, depth, letters }) => (
        <div class="dlq" data-dlq={queue}>
          <h3>
            {queue}.dlq <small>{depth} message{depth === 1 ? "" : "s"}</small>
            <ReplayButton label="Replay all" queue={queue} />
          </h3>
          <ul>
            {letters.map((letter) => (
              <li data-message-id={letter.message_id} data-order-id={letter.order_id}>
                <div class="letter-head">
                  <code>{letter.message_id || "(no id)"}</code>
                  <span>order {letter.order_id || "–"}</span>
                  <span>attempts {letter.attempts}</span>
                  <span>{letter.first_failed_at}</span>
                  {letter.message_id && (
                    <ReplayButton label="Replay" queue={queue} messageId={letter.message_id} />
                  )}
                </div>
                <p class="reason">{letter.reason}</p>
                <details>
                  <summary>{letter.routing_key} body</summary>
                  <pre>{letter.body}</pre>
                </details>
              </li>
            ))}
          </ul>
        </div>
      ))}
    </>
  );
}

function ReplayButton(props: { label: string; queue?: string; messageId?: string }) {
  return (
    <form method="post" action="/dead-letters/replay" class="inline">
      {props.queue && <input type="hidden" name="queue" value={props.queue} />}
      {props.messageId && <input type="hidden" name="message_id" value={props.messageId} />}
      <button type="submit">{props.label}</button>
    </form>
  );
}
