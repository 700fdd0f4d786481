// What the JavaScript witnesses share: the agent that sends a vault's name to the key vault's
// door, and the protocol with the Python test that runs them (one JSON line per step on
// stdout; at an `await` line, the test acts and answers with a line on stdin).
import https from "node:https";
import { createInterface } from "node:readline";

/** An https.Agent that dials `door` (host:port) whatever the request's host, while TLS still
 * sends and checks the vault's own name (Node's agent sets `servername` from the request's
 * host before createConnection, and tls.connect checks the certificate against it). The
 * smallest client-side setting that sends https://{vault}.vault.azure.net to the door: the
 * SDKs' documented `agent` option (PipelineOptions.agent). */
export class DoorAgent extends https.Agent {
  constructor(door) {
    super({ keepAlive: true });
    const at = new URL(`https://${door}`);
    this.doorHost = at.hostname.replace(/^\[|\]$/g, "");
    this.doorPort = Number(at.port || 443);
  }

  createConnection(options, callback) {
    return super.createConnection({ ...options, host: this.doorHost, port: this.doorPort }, callback);
  }
}

export const emit = (line) => process.stdout.write(JSON.stringify(line) + "\n");

/** A `step(name, action, show)` that runs one step and prints what came of it (through
 * `show`, errors through `errorOf`); a step that threw returns undefined, and the steps after
 * it that need its value throw in turn (each printed), so the first error printed is the cause. */
export function stepper(errorOf) {
  return async function step(name, action, show = (value) => value) {
    try {
      const result = await action();
      emit({ step: name, result: result === undefined ? null : show(result) });
      return result;
    } catch (e) {
      emit({ step: name, error: errorOf(e) });
      return undefined;
    }
  };
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Print `{await: name}` and wait for the test's line on stdin. */
export async function awaitTest(name) {
  emit({ await: name });
  const { done } = await lines.next();
  if (done) throw new Error(`stdin closed while awaiting ${name}`);
}
