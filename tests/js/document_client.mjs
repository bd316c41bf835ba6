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

import {
  briefError,
  clientConfig,
  endpointAnd,
  lastHeader,
  pkSkTable,
  plain,
  recorder,
  runScenario,
} from "./common.mjs";

const [endpoint, table] = endpointAnd("document_client.mjs", "<table-name>");

const base = new DynamoDBClient(clientConfig(endpoint));
const documents = DynamoDBDocumentClient.from(base, {
  marshallOptions: { removeUndefinedValues: true },
});

// Each step records the answer's cache header too.
const lastCache = lastHeader(base, "x-daxproxy-cache");
const { steps, step } = recorder({
  toJson: (value) => plain(value, { sortSets: true }),
  describeError: briefError,
  more: () => ({ cache: lastCache() }),
});

const send = (op, command, client = documents) => step(op, client, command);

async function twice(op, makeCommand) {
  await send(op, makeCommand());
  await send(`${op} again`, makeCommand());
}

async function scenario() {
  await send("CreateTable", new CreateTableCommand(pkSkTable(table)), base);

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

await runScenario(scenario, steps, [documents]);
