// The official MCP TypeScript SDK client against fleetgate.
// Usage: node sdk-client.mjs <mcp-url> <tool-name>
// Connects over Streamable HTTP, lists tools, calls <tool-name> with
// {text: "from the sdk"}, and prints one JSON line: {tools: [...], result: {...}}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, tool] = process.argv.slice(2);
if (!url || !tool) {
  console.error("usage: node sdk-client.mjs <mcp-url> <tool-name>");
  process.exit(64);
}
const client = new Client({ name: "fleetgate-sdk-test", version: "0.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
const { tools } = await client.listTools();
const result = await client.callTool({ name: tool, arguments: { text: "from the sdk" } });
const sessionId = transport.sessionId;
await transport.terminateSession();
await client.close();
console.log(JSON.stringify({ tools: tools.map((t) => t.name), result, sessionId }));
