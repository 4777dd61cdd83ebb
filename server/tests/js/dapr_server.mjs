// Dapr's JS SDK as an app: a DaprServer subscribed to "orders" on pub/sub "bus", in its default HTTP mode
// (the runtime reads GET /dapr/subscribe and POSTs events) or with DAPR_PROTOCOL=grpc (Dapr's AppCallback on
// APP_PORT). Prints {"started": true} once serving, then one {"received": ...} line per event.
// Run by server/tests/test_dapr_js_sdk.py, which stops it.
import { DaprServer, CommunicationProtocolEnum } from "@dapr/dapr";

const grpc = process.env.DAPR_PROTOCOL === "grpc";
const server = new DaprServer({
  serverHost: "127.0.0.1",
  serverPort: process.env.APP_PORT,
  communicationProtocol: grpc ? CommunicationProtocolEnum.GRPC : CommunicationProtocolEnum.HTTP,
  clientOptions: { daprHost: "127.0.0.1", daprPort: process.env.DAPR_PORT },
});
await server.pubsub.subscribe("bus", "orders", async (data) => {
  console.log(JSON.stringify({ received: data }));
});
await server.start();
console.log(JSON.stringify({ started: true }));
