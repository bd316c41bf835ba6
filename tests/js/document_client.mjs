// One fixed scenario driven by the DocumentClient (@aws-sdk/lib-dynamodb): plain JavaScript
// values in and out, marshalled by the SDK.
//
//   node document_client.mjs <endpoint-url> <table-name>
//
// Prints one JSON document on stdout: a list of {"op", "result", "cache"} (the output without
// $metadata, and the answer's x-daxproxy-cache header, null when there is none) or {"op",
// "error": {"name", "message", "status"}, "cache"}. tests/integration/test_document_client.py
// runs it once through daxproxy and once straight against moto and compares the two. Reads
// are made twice in a row ("... again"), so that the second can be checked to be a hit.
// Credentials come from the environment; every request is sent once (no SDK retries).

import { CreateTableCommand, DeleteTableCommand, DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  BatchGetCommand,
  BatchWriteCommand,
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  TransactGetCommand,
  TransactWriteCommand,
  UpdateCommand,
} from "@aws-sdk/lib-dynamodb";

const [endpoint, table] = process.argv.slice(2);
if (!endpoint || !table) {
  console.error("usage: node document_client.mjs <endpoint-url> <table-name>");
  process.exit(2);
}

const base = new DynamoDBClient({ endpoint, region: "us-east-1", maxAttempts: 1 });
const documents = DynamoDBDocumentClient.from(base, {
  marshallOptions: { removeUndefinedValues: true },
});

// The cache header of the last answer, read where the SDK deserializes it.
let lastCache = null;
base.middlewareStack.add(
  (next) => async (args) => {
    lastCache = null;
    try {
      const out = await next(args);
      lastCache = out.response?.headers?.["x-daxproxy-cache"] ?? null;
      return out;
    } catch (err) {
      lastCache = err?.$response?.headers?.["x-daxproxy-cache"] ?? null;
      throw err;
    }
  },
  { step: "deserialize", name: "daxproxyCacheHeader" },
);

const steps = [];

function plain(value) {
  if (value instanceof Set) return [...value].map(plain).sort();
  if (value instanceof Uint8Array) return Buffer.from(value).toString("base64");
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const [key, item] of Object.entries(value)) {
      if (item !== undefined) out[key] = plain(item);
    }
    return out;
  }
  return value;
}

async function send(op, command, client = documents) {
  try {
    const { $metadata, ...result } = await client.send(command);
    steps.push({ op, result: plain(result), cache: lastCache });
    return result;
  } catch (err) {
    if (err?.$metadata === undefined) throw err; // no answer from a server: not a result
    const error = { name: err.name, message: err.message, status: err.$metadata.httpStatusCode };
    steps.push({ op, error, cache: lastCache });
    return undefined;
  }
}

async function twice(op, makeCommand) {
  await send(op, makeCommand());
  await send(`${op} again`, makeCommand());
}

async function scenario() {
  await send(
    "CreateTable",
    new CreateTableCommand({
      TableName: table,
      AttributeDefinitions: [
        { AttributeName: "pk", AttributeType: "S" },
        { AttributeName: "sk", AttributeType: "N" },
      ],
      KeySchema: [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ],
      BillingMode: "PAY_PER_REQUEST",
    }),
    base,
  );

  // Writes first: in --mode dax a Query after a write may be stale, and moto never is.
  await send(
    "Put",
    new PutCommand({
      TableName: table,
      Item: {
        pk: "a",
        sk: 1,
        name: "Ada",
        tags: new Set(["x", "y"]),
        notes: ["one", 2, { three: 3 }],
        details: { city: "Oslo", visits: 4, empty: null },
        skipped: undefined,
      },
    }),
  );
  await send(
    "BatchWrite",
    new BatchWriteCommand({
      RequestItems: {
        [table]: [2, 3, 4]
          .map((sk) => ({ PutRequest: { Item: { pk: "a", sk, title: `post ${sk}`, views: sk } } }))
          .concat([{ PutRequest: { Item: { pk: "b", sk: 1, title: "other" } } }]),
      },
    }),
  );
  await send("Delete", new DeleteCommand({ TableName: table, Key: { pk: "a", sk: 4 } }));

  // Reads, each twice.
  await twice("Get", () => new GetCommand({ TableName: table, Key: { pk: "a", sk: 1 } }));
  await twice(
    "Get (projection #n[1])",
    () =>
      new GetCommand({
        TableName: table,
        Key: { pk: "a", sk: 1 },
        ProjectionExpression: "#n[1], details.city",
        ExpressionAttributeNames: { "#n": "notes" },
      }),
  );
  await twice(
    "Query",
    () =>
      new QueryCommand({
        TableName: table,
        KeyConditionExpression: "pk = :pk AND sk >= :lo",
        ExpressionAttributeValues: { ":pk": "a", ":lo": 2 },
        ScanIndexForward: false,
      }),
  );
  await twice(
    "Query (count)",
    () =>
      new QueryCommand({
        TableName: table,
        KeyConditionExpression: "pk = :pk",
        ExpressionAttributeValues: { ":pk": "a" },
        Select: "COUNT",
      }),
  );
  await twice(
    "BatchGet",
    () =>
      new BatchGetCommand({
        RequestItems: { [table]: { Keys: [{ pk: "a", sk: 2 }, { pk: "b", sk: 1 }] } },
      }),
  );
  await send(
    "Scan",
    new ScanCommand({
      TableName: table,
      FilterExpression: "#v >= :v",
      ExpressionAttributeNames: { "#v": "views" }, // a reserved word
      ExpressionAttributeValues: { ":v": 3 },
    }),
  );
  await send("Get (missing)", new GetCommand({ TableName: table, Key: { pk: "zz", sk: 9 } }));
  // A key attribute holding a map: DynamoDB answers 400 ValidationException; moto an HTML
  // 500 (tests/unit/test_where_moto_differs.py pins the proxy's part).
  await send(
    "Get (key holding a map)",
    new GetCommand({ TableName: table, Key: { pk: { x: "a" }, sk: 1 } }),
  );

  // Writes the item cache keeps coherent, and reads of what they wrote.
  await send(
    "Update",
    new UpdateCommand({
      TableName: table,
      Key: { pk: "a", sk: 1 },
      UpdateExpression: "SET #n[1] = :twenty, details.visits = :five ADD tags :z",
      ExpressionAttributeNames: { "#n": "notes" },
      ExpressionAttributeValues: { ":twenty": 20, ":five": 5, ":z": new Set(["z"]) },
      ReturnValues: "ALL_NEW",
    }),
  );
  await twice("Get (after update)", () => new GetCommand({ TableName: table, Key: { pk: "a", sk: 1 } }));
  await send(
    "Put (condition fails)",
    new PutCommand({
      TableName: table,
      Item: { pk: "a", sk: 1 },
      ConditionExpression: "attribute_not_exists(pk)",
    }),
  );
  await send(
    "TransactWrite",
    new TransactWriteCommand({
      TransactItems: [
        { Put: { TableName: table, Item: { pk: "c", sk: 1, title: "in a transaction" } } },
        {
          Update: {
            TableName: table,
            Key: { pk: "a", sk: 2 },
            UpdateExpression: "SET title = :t",
            ExpressionAttributeValues: { ":t": "changed" },
          },
        },
        { Delete: { TableName: table, Key: { pk: "a", sk: 3 } } },
      ],
    }),
  );
  await send(
    "TransactGet",
    new TransactGetCommand({
      TransactItems: [
        { Get: { TableName: table, Key: { pk: "c", sk: 1 } } },
        { Get: { TableName: table, Key: { pk: "a", sk: 2 } } },
        { Get: { TableName: table, Key: { pk: "a", sk: 3 } } },
      ],
    }),
  );
  await twice("Get (after the transaction)", () => new GetCommand({ TableName: table, Key: { pk: "a", sk: 2 } }));
  await send("DeleteTable", new DeleteTableCommand({ TableName: table }), base);
}

try {
  await scenario();
} catch (err) {
  console.error(`scenario aborted after ${steps.length} steps:`, err);
  process.exitCode = 1;
} finally {
  documents.destroy();
  console.log(JSON.stringify(steps, null, 1));
}
