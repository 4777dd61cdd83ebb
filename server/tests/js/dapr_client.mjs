// Dapr's JS SDK (@dapr/dapr) against the runtime: in its default HTTP mode on the HTTP port, or
// with DAPR_PROTOCOL=grpc on the gRPC port (DAPR_PORT). Run by server/tests/test_dapr_js_sdk.py;
// any failed assertion exits non-zero.
import assert from "node:assert/strict";
import { DaprClient, CommunicationProtocolEnum } from "@dapr/dapr";

const grpc = process.env.DAPR_PROTOCOL === "grpc";
const client = new DaprClient({
  daprHost: "127.0.0.1",
  daprPort: process.env.DAPR_PORT,
  communicationProtocol: grpc ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP,
});
const done = [];

// state: save, get, bulk, transaction, delete, an etag conflict
await client.state.save("store", [
  { key: "order", value: { id: 7, item: "book" } },
  { key: "name", value: "Bruce" },
]);
assert.deepEqual(await client.state.get("store", "order"), { id: 7, item: "book" });
assert.equal(await client.state.get("store", "name"), "Bruce");
const bulk = await client.state.getBulk("store", ["order", "missing"]);
// a missing key has no data: undefined over HTTP, "" over gRPC (the SDK's own difference)
assert.deepEqual(bulk.map((item) => [item.key, item.data || null]), [["order", { id: 7, item: "book" }], ["missing", null]]);
// the SDK's gRPC transaction takes Buffer.from(value): a string, not an object
const txValue = grpc ? JSON.stringify({ list: [1, 2] }) : { list: [1, 2] };
await client.state.transaction("store", [
  { operation: "upsert", request: { key: "tx", value: txValue } },
  { operation: "delete", request: { key: "name" } },
]);
assert.deepEqual(await client.state.get("store", "tx"), { list: [1, 2] });
assert.equal(await client.state.get("store", "name"), "");
await client.state.delete("store", "order");
assert.equal(await client.state.get("store", "order"), "");
// a stale etag fails the save: the HTTP client answers {error}, the gRPC client throws (ABORTED)
const stale = await client.state
  .save("store", [{ key: "tx", value: 3, etag: "999" }])
  .catch((error) => ({ error, code: error.code }));
assert.ok(stale.error, "a save with a stale etag is reported as an error");
assert.match(String(stale.error.message ?? stale.error), /etag mismatch/);
assert.deepEqual(await client.state.get("store", "tx"), { list: [1, 2] });
done.push("state");

// publish: a JSON event and a bulk publish
const published = await client.pubsub.publish("bus", "orders", { id: 1 });
assert.equal(published.error, undefined, JSON.stringify(published));
const bulkPublished = await client.pubsub.publishBulk("bus", "orders", [{ id: 2 }, "three"]);
assert.deepEqual(bulkPublished.failedMessages, []);
done.push("publish");

// secrets
assert.deepEqual(await client.secret.get("vault", "db-password"), { "db-password": "s3cret" });
assert.deepEqual(Object.keys(await client.secret.getBulk("vault")).sort(), ["api:token", "db-password"]);
done.push("secrets");

// metadata: the SDK's start-up check polled it already; set and read an attribute
await client.metadata.set("team", "payments");
const metadata = await client.metadata.get();
assert.equal(metadata.extended.team, "payments");
assert.ok(metadata.components.some((c) => c.name === "store" && c.type === "state.in-memory"));
done.push("metadata");

// lock
const locked = await client.lock.lock("locks", "invoice-9", "worker-1", 30);
assert.equal(locked.success, true);
const unlocked = await client.lock.unlock("locks", "invoice-9", "worker-1");
assert.equal(unlocked.status, 0);
done.push("lock");

// bindings: a file written and read back through the localstorage output binding
const fileName = `js-${grpc ? "grpc" : "http"}.json`;
await client.binding.send("disk", "create", { n: 1, item: "book" }, { fileName });
const read = await client.binding.send("disk", "get", undefined, { fileName });
// HTTP: the body, parsed as the JSON it is; gRPC: {data: the bytes, metadata, operation}
const readBack = grpc ? JSON.parse(Buffer.from(read.data).toString()) : read;
assert.deepEqual(readBack, { n: 1, item: "book" });
done.push("bindings");

// configuration: the SDK serves it over gRPC only (its HTTP client throws HTTPNotSupportedError)
if (grpc) {
  const got = await client.configuration.get("config", ["flag"]);
  assert.equal(got.items.flag.value, "on");
  const subscription = await client.configuration.subscribeWithKeys("config", ["flag"], () => {});
  await subscription.stop();
  done.push("configuration");
}

console.log(JSON.stringify({ done }));
