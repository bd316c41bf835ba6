// What the scenarios in this folder share (scenario.mjs, document_client.mjs; dax_client.mjs
// takes clientConfig and plain): reading the command line, the clients' settings, recording
// each step's output or service error as JSON, and running a scenario so that the steps so
// far reach stdout however it ends.
// tests/integration/node_scripts.py runs a scenario once through daxproxy and once straight
// against moto; the tests compare the two documents.

// `node <script> <endpoint-url> <name>`: the two arguments, or the usage and exit 2.
export function endpointAnd(script, name) {
  const [endpoint, value] = process.argv.slice(2);
  if (!endpoint || !value) {
    console.error(`usage: node ${script} <endpoint-url> ${name}`);
    process.exit(2);
  }
  return [endpoint, value];
}

// A client's settings: credentials come from the environment; every request is sent once
// (no SDK retries), so that a fault is seen as it happened rather than hidden by a retry.
export const clientConfig = (endpoint) => ({ endpoint, region: "us-east-1", maxAttempts: 1 });

// A table with a string hash key "pk" and a number range key "sk".
export const pkSkAttributes = () => [
  { AttributeName: "pk", AttributeType: "S" },
  { AttributeName: "sk", AttributeType: "N" },
];

export const pkSkTable = (TableName) => ({
  TableName,
  AttributeDefinitions: pkSkAttributes(),
  KeySchema: [
    { AttributeName: "pk", KeyType: "HASH" },
    { AttributeName: "sk", KeyType: "RANGE" },
  ],
  BillingMode: "PAY_PER_REQUEST",
});

// The value of `header` on the last answer `client` received (null when there is none), read
// where the SDK deserializes it: the answer of a service error included.
export function lastHeader(client, header) {
  let last = null;
  client.middlewareStack.add(
    (next) => async (args) => {
      last = null;
      try {
        const out = await next(args);
        last = out.response?.headers?.[header] ?? null;
        return out;
      } catch (err) {
        last = err?.$response?.headers?.[header] ?? null;
        throw err;
      }
    },
    { step: "deserialize", name: `lastHeader ${header}` },
  );
  return () => last;
}

// JSON for an SDK value: dates are clocks ("<time>"), binary is base64, bigint a string; a
// Set's members in its own order, or sorted with `sortSets`.
export function plain(value, { sortSets = false } = {}) {
  const inner = (item) => plain(item, { sortSets });
  if (value instanceof Date) return "<time>";
  if (value instanceof Uint8Array) return Buffer.from(value).toString("base64");
  if (typeof value === "bigint") return value.toString();
  if (value instanceof Set) {
    const members = [...value].map(inner);
    return sortSets ? members.sort() : members;
  }
  if (Array.isArray(value)) return value.map(inner);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const [key, item] of Object.entries(value)) {
      if (item !== undefined) out[key] = inner(item);
    }
    return out;
  }
  return value;
}

// A service error as the SDK surfaces it: name, message, HTTP status.
export function briefError(err) {
  return { name: err.name, message: err.message, status: err.$metadata?.httpStatusCode };
}

// The same, with the modelled fields of the error shape (CancellationReasons, Item, ...):
// own properties that do not start with "$".
const ERROR_BOOKKEEPING = new Set(["name", "message", "Message", "stack", "__type"]);

export function serviceError(err) {
  const error = briefError(err);
  for (const [key, item] of Object.entries(err)) {
    if (!key.startsWith("$") && !ERROR_BOOKKEEPING.has(key) && item !== undefined) {
      error[key] = plain(item);
    }
  }
  return error;
}

// The steps of a scenario, and `step(op, client, command)`, which sends the command and
// records {op, result} (the output without $metadata, through `toJson`) or {op, error}
// (through `describeError`), each with the fields `more()` adds; it returns the output, or
// undefined after a service error. An error with no answer from a server is thrown.
export function recorder({ toJson = plain, describeError = serviceError, more = () => ({}) } = {}) {
  const steps = [];
  async function step(op, client, command) {
    try {
      const { $metadata, ...result } = await client.send(command);
      steps.push({ op, result: toJson(result), ...more() });
      return result;
    } catch (err) {
      if (err?.$metadata === undefined) throw err; // no answer from a server: not a result
      steps.push({ op, error: describeError(err), ...more() });
      return undefined;
    }
  }
  return { steps, step };
}

// Runs the scenario, then destroys the clients and prints the steps on stdout, however it
// ended. If the scenario itself broke (no service answer, or a step depended on a failed
// one), what ran so far still goes to stdout, for the test's report, and the exit code is 1.
export async function runScenario(scenario, steps, clients) {
  try {
    await scenario();
  } catch (err) {
    console.error(`scenario aborted after ${steps.length} steps:`, err);
    process.exitCode = 1;
  } finally {
    for (const client of clients) client.destroy();
    console.log(JSON.stringify(steps, null, 1));
  }
}
