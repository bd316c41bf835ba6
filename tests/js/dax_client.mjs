// The JavaScript DAX client (@amazon-dax-sdk/client-dax, and its DocumentClient
// @amazon-dax-sdk/lib-dax on @aws-sdk/lib-dynamodb) driven through daxproxy, unchanged.
//
//   node dax_client.mjs <dax-endpoint> <http-endpoint> <steps.json>
//
// <steps.json> is a list of steps {"op", "via", "params", "pages", "hits"} written by
// tests/integration/test_dax_js_client.py, which makes the same calls with boto3 straight at
// moto and compares. "via" is "dax" (the Dax client, op as it names it: getItem, ...),
// "document" (DaxDocument: get, put, ...; params in DynamoDB JSON, turned into plain values
// with lib-dynamodb's own key maps) or "http" (the SDK's DynamoDBClient at <http-endpoint>,
// so that what one side writes the other reads). Binary values are base64 text ({"B": ...})
// both ways. With "pages" the step follows LastEvaluatedKey and records every page; with
// "hits" (a counter's name) it also records how much the proxy's /metrics counter grew
// during the step. TLS: a daxs:// endpoint, the CA given by NODE_EXTRA_CA_CERTS.
//
// Prints one JSON document on stdout: a list of {"op", "result"} or {"op", "error": {"code",
// "message", "status", "reasons"}}, each with "hits" when asked. The clients send each call
// once (no retries), so a fault is seen as it happened.

import { readFileSync } from "node:fs";

import { Dax } from "@amazon-dax-sdk/client-dax";
import { DaxDocument } from "@amazon-dax-sdk/lib-dax";
import Util from "@amazon-dax-sdk/lib-dax/src/Util.js";
import * as DynamoDB from "@aws-sdk/client-dynamodb";

import { clientConfig, plain } from "./common.mjs";

const [daxEndpoint, httpEndpoint, stepsFile] = process.argv.slice(2);
if (!stepsFile) {
  console.error("usage: node dax_client.mjs <dax-endpoint> <http-endpoint> <steps.json>");
  process.exit(2);
}

const daxConfig = () => ({ endpoints: [daxEndpoint], region: "us-east-1", maxRetries: 0 });
const dax = new Dax(daxConfig());
const documents = new DaxDocument(daxConfig());
const http = new DynamoDB.DynamoDBClient(clientConfig(httpEndpoint));

// DynamoDB JSON from the test: {"B": base64} and {"BS": [base64]} become Buffers (the DAX
// client encodes Buffers only).
function binaryIn(value) {
  if (Array.isArray(value)) return value.map(binaryIn);
  if (value === null || typeof value !== "object") return value;
  const entries = Object.entries(value);
  if (entries.length === 1) {
    const [[kind, inner]] = entries;
    if (kind === "B" && typeof inner === "string") return { B: Buffer.from(inner, "base64") };
    if (kind === "BS" && Array.isArray(inner) && inner.every((m) => typeof m === "string")) {
      return { BS: inner.map((m) => Buffer.from(m, "base64")) };
    }
  }
  return Object.fromEntries(entries.map(([k, v]) => [k, binaryIn(v)]));
}

// DaxDocument's calls, with DynamoDB JSON in and out: lib-dynamodb's key maps say where the
// values are; the plain values are what a DocumentClient user passes.
async function throughDocuments(op, params) {
  const input = Util.unmarshallOutput(params, Util.inputKeyNodes(op), Util.unmarshallOptions());
  const output = await documents[op](input);
  return Util.marshallInput(output, Util.outputKeyNodes(op), Util.marshallingOptions());
}

const HTTP_COMMANDS = {
  getItem: DynamoDB.GetItemCommand,
  putItem: DynamoDB.PutItemCommand,
  updateItem: DynamoDB.UpdateItemCommand,
  deleteItem: DynamoDB.DeleteItemCommand,
  query: DynamoDB.QueryCommand,
  scan: DynamoDB.ScanCommand,
  batchGetItem: DynamoDB.BatchGetItemCommand,
};

async function call({ op, via, params }) {
  const input = binaryIn(params);
  if (via === "document") return throughDocuments(op, input);
  if (via === "http") {
    const { $metadata, ...output } = await http.send(new HTTP_COMMANDS[op](input));
    return output;
  }
  return dax[op](input);
}

// The proxy's counter `name` (daxproxy_item_cache_hits_total, ...) now, every series summed.
async function counter(name) {
  const text = await (await fetch(`${httpEndpoint}/metrics`)).text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) {
      total += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return total;
}

function failure(err) {
  if (err?.codeSeq === undefined && err?.$metadata === undefined) throw err; // not an answer
  const error = {
    code: err.code ?? err.name,
    message: err.message,
    status: err.statusCode ?? err.$metadata?.httpStatusCode,
  };
  const reasons = err.cancellationReasons ?? err.CancellationReasons;
  if (reasons) error.reasons = plain(reasons);
  return error;
}

async function run(step) {
  const before = step.hits ? await counter(step.hits) : 0;
  const record = { op: step.op };
  try {
    if (step.pages) {
      const pages = [];
      let params = step.params;
      for (;;) {
        const page = plain(await call({ ...step, params }));
        pages.push(page);
        if (!page.LastEvaluatedKey) break;
        params = { ...params, ExclusiveStartKey: page.LastEvaluatedKey };
      }
      record.result = pages;
    } else {
      record.result = plain(await call(step));
    }
  } catch (err) {
    record.error = failure(err);
  }
  if (step.hits) record.hits = (await counter(step.hits)) - before;
  return record;
}

const steps = JSON.parse(readFileSync(stepsFile, "utf8"));
const records = [];
try {
  for (const step of steps) records.push(await run(step));
} catch (err) {
  console.error(`aborted after ${records.length} steps:`, err);
  process.exitCode = 1;
} finally {
  dax.shutdown();
  documents.shutdown();
  http.destroy();
  console.log(JSON.stringify(records, null, 1));
}
