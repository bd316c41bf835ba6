// One fixed DynamoDB scenario, driven by the AWS SDK for JavaScript v3.
//
//   node scenario.mjs <endpoint-url> <table-name-prefix>
//
// Prints one JSON document on stdout: a list of {"op", "result"} (the SDK's output without
// $metadata) or {"op", "error": {"name", "message", "status", ...}} (a service error, with
// any modelled fields such as CancellationReasons). tests/integration/test_js_sdk.py runs it
// once through daxproxy and once straight against moto and compares the two documents.
// Credentials come from the environment; every request is sent once (no SDK retries), so
// that a fault is seen as it happened rather than hidden by a successful retry.

import {
  BatchGetItemCommand,
  BatchWriteItemCommand,
  CreateTableCommand,
  DeleteItemCommand,
  DeleteTableCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  ExecuteStatementCommand,
  GetItemCommand,
  ListTablesCommand,
  ListTagsOfResourceCommand,
  PutItemCommand,
  QueryCommand,
  ScanCommand,
  TagResourceCommand,
  TransactGetItemsCommand,
  TransactWriteItemsCommand,
  UpdateItemCommand,
  UpdateTableCommand,
  UpdateTimeToLiveCommand,
} from "@aws-sdk/client-dynamodb";
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListStreamsCommand,
} from "@aws-sdk/client-dynamodb-streams";

import {
  clientConfig,
  endpointAnd,
  pkSkAttributes,
  pkSkTable,
  plain,
  recorder,
  runScenario,
  serviceError,
} from "./common.mjs";

const [endpoint, prefix] = endpointAnd("scenario.mjs", "<table-name-prefix>");

const config = clientConfig(endpoint);
const dynamodb = new DynamoDBClient(config);
const streams = new DynamoDBStreamsClient(config);

const MAIN = `${prefix}-main`; // hash + range key, stream NEW_AND_OLD_IMAGES, on demand
const AUX = `${prefix}-aux`; // hash key only, provisioned, no stream
const MISSING = `${prefix}-missing`; // never created

// Errors with their modelled fields (CancellationReasons, Item, ...).
const { steps, step } = recorder({ toJson: plain, describeError: serviceError });

const send = (op, command) => step(op, dynamodb, command);
const sendStreams = (op, command) => step(op, streams, command);

async function waitForActive(table) {
  for (let poll = 0; poll < 100; poll += 1) {
    const { Table } = await dynamodb.send(new DescribeTableCommand({ TableName: table }));
    const indexes = Table.GlobalSecondaryIndexes ?? [];
    if (Table.TableStatus === "ACTIVE" && indexes.every((i) => i.IndexStatus === "ACTIVE")) {
      steps.push({ op: "WaitForActive", result: { TableName: table, TableStatus: "ACTIVE" } });
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${table} did not become ACTIVE`);
}

const key = (pk, sk) => ({ pk: { S: pk }, sk: { N: String(sk) } });

async function scenario() {
  // Tables.
  await send(
    "CreateTable",
    new CreateTableCommand({
      ...pkSkTable(MAIN),
      StreamSpecification: { StreamEnabled: true, StreamViewType: "NEW_AND_OLD_IMAGES" },
    }),
  );
  await send(
    "CreateTable",
    new CreateTableCommand({
      TableName: AUX,
      AttributeDefinitions: [{ AttributeName: "id", AttributeType: "S" }],
      KeySchema: [{ AttributeName: "id", KeyType: "HASH" }],
      ProvisionedThroughput: { ReadCapacityUnits: 5, WriteCapacityUnits: 5 },
    }),
  );
  await waitForActive(MAIN);
  await waitForActive(AUX);
  const described = await send("DescribeTable", new DescribeTableCommand({ TableName: MAIN }));
  const listed = await dynamodb.send(new ListTablesCommand({}));
  steps.push({
    op: "ListTables",
    result: { TableNames: listed.TableNames.filter((name) => name.startsWith(`${prefix}-`)) },
  });

  // Items.
  await send(
    "PutItem",
    new PutItemCommand({
      TableName: MAIN,
      Item: {
        ...key("user#1", 1),
        name: { S: "Ada" },
        age: { N: "36" },
        avatar: { B: Uint8Array.from([0, 1, 2, 253, 254, 255]) },
        tags: { SS: ["math", "engines"] },
        scores: { NS: ["1.5", "2"] },
        blobs: { BS: [Uint8Array.from([7]), Uint8Array.from([8, 9])] },
        address: { M: { city: { S: "London" }, zip: { NULL: true } } },
        history: { L: [{ N: "1843" }, { BOOL: true }, { S: "notes" }] },
        active: { BOOL: true },
      },
    }),
  );
  await send("GetItem", new GetItemCommand({ TableName: MAIN, Key: key("user#1", 1) }));
  await send(
    "GetItem (projection, consistent)",
    new GetItemCommand({
      TableName: MAIN,
      Key: key("user#1", 1),
      ProjectionExpression: "#n, address.city, history[0]",
      ExpressionAttributeNames: { "#n": "name" },
      ConsistentRead: true,
    }),
  );
  await send(
    "UpdateItem",
    new UpdateItemCommand({
      TableName: MAIN,
      Key: key("user#1", 1),
      UpdateExpression: "SET age = age + :one, #s = :status ADD tags :tag REMOVE active",
      ExpressionAttributeNames: { "#s": "status" },
      ExpressionAttributeValues: {
        ":one": { N: "1" },
        ":status": { S: "updated" },
        ":tag": { SS: ["poetry"] },
      },
      ReturnValues: "ALL_NEW",
    }),
  );
  await send(
    "PutItem (ReturnValues ALL_OLD)",
    new PutItemCommand({
      TableName: MAIN,
      Item: { ...key("user#1", 2), name: { S: "Ada, again" } },
      ReturnValues: "ALL_OLD",
    }),
  );
  await send(
    "DeleteItem",
    new DeleteItemCommand({ TableName: MAIN, Key: key("user#1", 2), ReturnValues: "ALL_OLD" }),
  );
  await send(
    "BatchWriteItem",
    new BatchWriteItemCommand({
      RequestItems: {
        [MAIN]: [2, 3, 4, 5].map((sk) => ({
          PutRequest: { Item: { ...key("user#2", sk), n: { N: String(sk * 10) } } },
        })),
        [AUX]: ["a", "b", "c"].map((id) => ({
          PutRequest: { Item: { id: { S: id }, value: { S: `value-${id}` } } },
        })),
      },
    }),
  );
  await send(
    "BatchWriteItem (delete)",
    new BatchWriteItemCommand({
      RequestItems: { [AUX]: [{ DeleteRequest: { Key: { id: { S: "c" } } } }] },
    }),
  );
  await send(
    "BatchGetItem",
    new BatchGetItemCommand({
      RequestItems: {
        [MAIN]: { Keys: [key("user#2", 3), key("user#1", 1), key("user#9", 9)] },
        [AUX]: { Keys: [{ id: { S: "a" } }], ProjectionExpression: "id" },
      },
    }),
  );
  await send(
    "Query",
    new QueryCommand({
      TableName: MAIN,
      KeyConditionExpression: "pk = :pk AND sk BETWEEN :low AND :high",
      ExpressionAttributeValues: { ":pk": { S: "user#2" }, ":low": { N: "3" }, ":high": { N: "5" } },
      ScanIndexForward: false,
    }),
  );
  const firstPage = await send(
    "Query (page 1)",
    new QueryCommand({
      TableName: MAIN,
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": { S: "user#2" } },
      Limit: 2,
    }),
  );
  await send(
    "Query (page 2)",
    new QueryCommand({
      TableName: MAIN,
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": { S: "user#2" } },
      Limit: 2,
      ExclusiveStartKey: firstPage?.LastEvaluatedKey,
    }),
  );
  await send(
    "Scan",
    new ScanCommand({
      TableName: MAIN,
      FilterExpression: "attribute_exists(n) AND n >= :min",
      ExpressionAttributeValues: { ":min": { N: "30" } },
    }),
  );
  await send("Scan (count)", new ScanCommand({ TableName: AUX, Select: "COUNT" }));

  // Transactions.
  await send(
    "TransactWriteItems",
    new TransactWriteItemsCommand({
      TransactItems: [
        { Put: { TableName: AUX, Item: { id: { S: "t1" }, value: { S: "from a transaction" } } } },
        {
          Update: {
            TableName: MAIN,
            Key: key("user#2", 2),
            UpdateExpression: "SET n = n + :d",
            ExpressionAttributeValues: { ":d": { N: "1" } },
          },
        },
        { Delete: { TableName: MAIN, Key: key("user#2", 5) } },
        {
          ConditionCheck: {
            TableName: AUX,
            Key: { id: { S: "a" } },
            ConditionExpression: "attribute_exists(id)",
          },
        },
      ],
    }),
  );
  await send(
    "TransactGetItems",
    new TransactGetItemsCommand({
      TransactItems: [
        { Get: { TableName: AUX, Key: { id: { S: "t1" } } } },
        { Get: { TableName: MAIN, Key: key("user#2", 2) } },
        { Get: { TableName: MAIN, Key: key("user#2", 5) } },
      ],
    }),
  );

  // PartiQL (in the forms moto's parser accepts: a literal INSERT, a parameterised UPDATE).
  await send(
    "ExecuteStatement (INSERT)",
    new ExecuteStatementCommand({
      Statement: `INSERT INTO "${MAIN}" VALUE {'pk': 'user#3', 'sk': 1, 'via': 'partiql'}`,
    }),
  );
  await send(
    "ExecuteStatement (UPDATE)",
    new ExecuteStatementCommand({
      Statement: `UPDATE "${MAIN}" SET via = ? WHERE pk = ? AND sk = ?`,
      Parameters: [{ S: "partiql-update" }, { S: "user#3" }, { N: "1" }],
    }),
  );
  await send(
    "ExecuteStatement (SELECT)",
    new ExecuteStatementCommand({
      Statement: `SELECT * FROM "${MAIN}" WHERE pk = ?`,
      Parameters: [{ S: "user#3" }],
    }),
  );

  // Table settings: a new global secondary index, time to live, tags.
  await send(
    "UpdateTable",
    new UpdateTableCommand({
      TableName: MAIN,
      AttributeDefinitions: [...pkSkAttributes(), { AttributeName: "name", AttributeType: "S" }],
      GlobalSecondaryIndexUpdates: [
        {
          Create: {
            IndexName: "by-name",
            KeySchema: [{ AttributeName: "name", KeyType: "HASH" }],
            Projection: { ProjectionType: "KEYS_ONLY" },
          },
        },
      ],
    }),
  );
  await waitForActive(MAIN);
  await send(
    "Query (index)",
    new QueryCommand({
      TableName: MAIN,
      IndexName: "by-name",
      KeyConditionExpression: "#n = :name",
      ExpressionAttributeNames: { "#n": "name" },
      ExpressionAttributeValues: { ":name": { S: "Ada" } },
    }),
  );
  await send(
    "UpdateTimeToLive",
    new UpdateTimeToLiveCommand({
      TableName: MAIN,
      TimeToLiveSpecification: { Enabled: true, AttributeName: "expires" },
    }),
  );
  await send("DescribeTimeToLive", new DescribeTimeToLiveCommand({ TableName: MAIN }));
  const arn = described?.Table?.TableArn;
  await send(
    "TagResource",
    new TagResourceCommand({
      ResourceArn: arn,
      Tags: [
        { Key: "team", Value: "storage" },
        { Key: "env", Value: "test" },
      ],
    }),
  );
  await send("ListTagsOfResource", new ListTagsOfResourceCommand({ ResourceArn: arn }));

  // Errors.
  await send(
    "PutItem (condition fails)",
    new PutItemCommand({
      TableName: MAIN,
      Item: { ...key("user#1", 1), name: { S: "Impostor" } },
      ConditionExpression: "attribute_not_exists(pk)",
      ReturnValuesOnConditionCheckFailure: "ALL_OLD",
    }),
  );
  await send("GetItem (missing table)", new GetItemCommand({ TableName: MISSING, Key: key("x", 1) }));
  await send("DescribeTable (missing table)", new DescribeTableCommand({ TableName: MISSING }));
  await send(
    "GetItem (incomplete key)",
    new GetItemCommand({ TableName: MAIN, Key: { pk: { S: "user#1" } } }),
  );
  await send(
    "UpdateItem (bad expression)",
    new UpdateItemCommand({
      TableName: MAIN,
      Key: key("user#1", 1),
      UpdateExpression: "SET age = :undefined",
    }),
  );
  await send(
    "TransactWriteItems (cancelled)",
    new TransactWriteItemsCommand({
      TransactItems: [
        { Put: { TableName: AUX, Item: { id: { S: "t2" } } } },
        {
          ConditionCheck: {
            TableName: MAIN,
            Key: key("user#1", 1),
            ConditionExpression: "age = :young",
            ExpressionAttributeValues: { ":young": { N: "1" } },
          },
        },
      ],
    }),
  );

  // DynamoDB Streams, on the same endpoint.
  const streamList = await sendStreams("ListStreams", new ListStreamsCommand({ TableName: MAIN }));
  const streamArn = streamList?.Streams?.[0]?.StreamArn;
  const stream = await sendStreams("DescribeStream", new DescribeStreamCommand({ StreamArn: streamArn }));
  const shardId = stream?.StreamDescription?.Shards?.[0]?.ShardId;
  const iterator = await sendStreams(
    "GetShardIterator",
    new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shardId, ShardIteratorType: "TRIM_HORIZON" }),
  );
  await sendStreams("GetRecords", new GetRecordsCommand({ ShardIterator: iterator?.ShardIterator }));

  // Clean-up.
  await send("DeleteTable", new DeleteTableCommand({ TableName: MAIN }));
  await send("DeleteTable", new DeleteTableCommand({ TableName: AUX }));
}

await runScenario(scenario, steps, [dynamodb, streams]);
