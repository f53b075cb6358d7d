// The official MCP TypeScript SDK (@modelcontextprotocol/sdk) as a client.
//
// Usage: node sdk-client.mjs {streamable|sse} <url> [echo-tool [notify-tool [input-tools]]]
//
// streamable: StreamableHTTPClientTransport, which opens the standalone GET
// stream once the session is initialized. sse: SSEClientTransport, the HTTP+SSE
// transport of 2024-11-05 (GET <url>, messages POSTed to the announced endpoint).
//
// Connects, lists tools, calls <echo-tool> (default "echo") with
// {text: "from the sdk"}. Unless <notify-tool> is "-", it then subscribes to
// test://watched-resource, sets the log level to debug, calls <notify-tool>
// (default "notify_later") and waits (10 s at most) until its notification
// handlers have seen both a notifications/resources/updated for that URI and a
// notifications/message, which the server sends outside any request. A
// Streamable HTTP session is ended with DELETE. Prints one JSON line with what
// it got; exits 1 when a step failed or a notification is missing.
//
// <input-tools> (comma-separated): tools that ask the client for input while
// they run (elicitation, sampling), each called with {} after <echo-tool>, the
// client's handlers answering (every field of an elicitation form "sdk", a
// sampled "from the sdk"); their result texts are kept under "inputs".
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

const WATCHED = "test://watched-resource";
const WAIT_MS = 10_000;

const [kind, url, echoTool = "echo", notifyTool = "notify_later", inputTools = ""] =
  process.argv.slice(2);
if (!["streamable", "sse"].includes(kind) || !url) {
  console.error("usage: node sdk-client.mjs {streamable|sse} <url> [echo-tool [notify-tool]]");
  process.exit(64);
}
const waitForNotifications = notifyTool !== "-";

const got = {
  transport: kind,
  protocolVersion: null,
  sessionId: null,
  tools: [],
  result: null,
  notify: null,
  inputs: {},
  updated: [],
  logs: [],
  transportErrors: [],
  step: "connect",
  error: null,
};
// The last step's name: "done", or what did not arrive in time.
let outcome = "done";

let sawUpdate;
let sawLog;
const updated = new Promise((resolve) => (sawUpdate = resolve));
const logged = new Promise((resolve) => (sawLog = resolve));

const client = new Client(
  { name: "fleetgate-sdk-test", version: "0.0.0" },
  { capabilities: { elicitation: {}, sampling: {} } },
);
client.setRequestHandler(ElicitRequestSchema, (r) => {
  const fields = Object.keys(r.params.requestedSchema?.properties ?? {});
  return { action: "accept", content: Object.fromEntries(fields.map((f) => [f, "sdk"])) };
});
client.setRequestHandler(CreateMessageRequestSchema, () => ({
  role: "assistant",
  content: { type: "text", text: "from the sdk" },
  model: "sdk",
}));
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
  got.updated.push(n.params.uri);
  if (n.params.uri === WATCHED) sawUpdate();
});
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
  got.logs.push(n.params);
  sawLog();
});
client.onerror = (e) => got.transportErrors.push(String(e));

const transport =
  kind === "streamable"
    ? new StreamableHTTPClientTransport(new URL(url))
    : new SSEClientTransport(new URL(url));

try {
  await client.connect(transport);
  got.protocolVersion = transport.protocolVersion ?? null;
  got.sessionId = transport.sessionId ?? null;
  got.step = "tools/list";
  const { tools } = await client.listTools();
  got.tools = tools.map((t) => t.name);
  got.step = `tools/call ${echoTool}`;
  got.result = await client.callTool({ name: echoTool, arguments: { text: "from the sdk" } });
  for (const tool of inputTools.split(",").filter(Boolean)) {
    got.step = `tools/call ${tool}`;
    const r = await client.callTool({ name: tool, arguments: {} });
    got.inputs[tool] = r.content.filter((c) => c.type === "text").map((c) => c.text).join(" ");
    if (r.isError) throw new Error(`${tool} failed: ${got.inputs[tool]}`);
  }
  if (waitForNotifications) {
    got.step = "resources/subscribe";
    await client.subscribeResource({ uri: WATCHED });
    got.step = "logging/setLevel";
    await client.setLoggingLevel("debug");
    got.step = `tools/call ${notifyTool}`;
    got.notify = await client.callTool({ name: notifyTool, arguments: { delay_ms: 300, uri: WATCHED } });
    if (got.notify.isError) throw new Error(`${notifyTool} failed`);
    got.step = "waiting for the notifications";
    let timer;
    const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve(false), WAIT_MS)));
    const notified = await Promise.race([Promise.all([updated, logged]).then(() => true), timeout]);
    clearTimeout(timer);
    if (!notified) outcome = `no notifications within ${WAIT_MS / 1000} s`;
  }
  if (kind === "streamable") {
    got.step = "DELETE";
    await transport.terminateSession();
  }
  got.step = outcome;
} catch (e) {
  got.error = String(e?.stack ?? e);
}
await client.close().catch(() => {});
console.log(JSON.stringify(got));
const notified = got.updated.includes(WATCHED) && got.logs.length > 0;
process.exit(got.error === null && (notified || !waitForNotifications) ? 0 : 1);
