// Written by Torch's agent supervisor at each start; edits are lost.
// Tells the supervisor what opencode does, in the shape of Claude Code's
// hook events, by running its hook command with the event on standard input.
import { spawn } from "node:child_process";
import { chmodSync, unlinkSync } from "node:fs";
import { createServer } from "node:net";

const HOOK = HOOK_ARGV;
// Where the supervisor hands this TUI a message to submit: a unix socket
// in the agent's runtime directory, its user's alone.
const CHANNEL = CHANNEL_PATH;
// Where opencode keeps its sessions: the supervisor resumes one only while it is there.
const STORE = `${process.env.XDG_DATA_HOME || `${process.env.HOME}/.local/share`}/opencode/opencode.db`;

function tell(event) {
  return new Promise((resolve) => {
    let out = "";
    let child;
    try {
      child = spawn(HOOK[0], HOOK.slice(1), { stdio: ["pipe", "pipe", "ignore"] });
    } catch {
      resolve("");
      return;
    }
    child.stdout.on("data", (d) => (out += d));
    child.on("error", () => resolve(""));
    child.on("close", () => resolve(out));
    child.stdin.on("error", () => {});
    child.stdin.end(JSON.stringify(event));
  });
}

function errorText(error) {
  if (!error) return "";
  const data = error.data || {};
  const status = data.statusCode ? ` ${data.statusCode}` : "";
  return `${error.name || "error"}${status}: ${data.message || ""}`;
}

// The supervisor's answer to a permission request (Claude Code's
// PermissionRequest output), handed to opencode; no answer leaves opencode's
// own dialog for a person (`torch answer`).
async function answer(client, request, out) {
  let behavior;
  try {
    behavior = JSON.parse(out).hookSpecificOutput.decision.behavior;
  } catch {
    return;
  }
  const response = behavior === "allow" ? "once" : "reject";
  await client.postSessionIdPermissionsPermissionId({
    path: { id: request.sessionID, permissionID: request.id },
    body: { response },
  });
}

// Each assistant message's tokens and cost, by message id: opencode reports a
// message again as it grows, so the session's totals are the sum of the last
// report of each.
const usage = new Map();

function usageOf(info) {
  usage.set(info.id, { tokens: info.tokens || {}, cost: info.cost || 0 });
  const total = { input: 0, output: 0, cache_read: 0, cache_write: 0 };
  let cost = 0;
  for (const u of usage.values()) {
    total.input += u.tokens.input || 0;
    total.output += (u.tokens.output || 0) + (u.tokens.reasoning || 0);
    total.cache_read += u.tokens.cache?.read || 0;
    total.cache_write += u.tokens.cache?.write || 0;
    cost += u.cost;
  }
  return { hook_event_name: "StatusLine", cost: { total_cost_usd: cost }, tokens: total };
}

// Puts `text` in the TUI's input box, in place of what was there, and
// submits it, through opencode's own TUI control API: nothing passes
// through the terminal, so no key of it can be read as another. The
// `chat.message` hook then reports the prompt taken.
async function submit(client, text) {
  for (const step of [
    () => client.tui.clearPrompt(),
    () => client.tui.appendPrompt({ body: { text } }),
    () => client.tui.submitPrompt(),
  ]) {
    const result = await step();
    if (result?.error || result?.data === false) {
      const why = result?.error ? JSON.stringify(result.error) : "refused";
      throw new Error(why);
    }
  }
}

// One request per connection: a JSON line `{"text": ...}` in, a JSON line
// `{"ok": true}` or `{"ok": false, "error": ...}` out.
function answerRequest(client, socket) {
  let line = "";
  socket.setEncoding("utf8");
  socket.on("error", () => {});
  socket.on("data", async (chunk) => {
    line += chunk;
    const end = line.indexOf("\n");
    if (end < 0) return;
    socket.pause();
    let reply;
    try {
      const { text } = JSON.parse(line.slice(0, end));
      if (typeof text !== "string") throw new Error("no text in the request");
      await submit(client, text);
      reply = { ok: true };
    } catch (e) {
      reply = { ok: false, error: String(e?.message || e) };
    }
    socket.end(JSON.stringify(reply) + "\n");
  });
}

// opencode may load the plugin once per project directory; one listens.
let listening = false;

function listen(client) {
  if (listening) return;
  listening = true;
  try {
    unlinkSync(CHANNEL);
  } catch {}
  const server = createServer((socket) => answerRequest(client, socket));
  server.on("error", () => {});
  server.listen(CHANNEL, () => {
    try {
      chmodSync(CHANNEL, 0o600);
    } catch {}
  });
}

export const TorchSupervisor = async ({ client }) => {
  listen(client);
  return handlers(client);
};

const handlers = (client) => ({
  event: async ({ event }) => {
    const p = event.properties || {};
    switch (event.type) {
      case "session.created":
        if (!p.info?.parentID) {
          await tell({
            hook_event_name: "SessionStart",
            session_id: p.info?.id || "",
            transcript_path: STORE,
          });
        }
        break;
      case "message.updated":
        if (p.info?.role === "assistant" && p.info?.time?.completed) {
          await tell(usageOf(p.info));
        }
        break;
      case "session.idle":
        await tell({ hook_event_name: "Stop", session_id: p.sessionID || "" });
        break;
      case "session.status":
        // Waiting to retry a call the API refused (a 429 until its reset).
        if (p.status?.type === "retry" && Number.isFinite(p.status.next)) {
          await tell({
            hook_event_name: "ApiRetry",
            retry_at_ms: p.status.next,
            message: p.status.message || "",
          });
        }
        break;
      case "session.error":
        await tell({ hook_event_name: "StopFailure", error: errorText(p.error) });
        break;
      case "permission.asked": {
        const out = await tell({
          hook_event_name: "PermissionRequest",
          tool_name: p.permission || "",
          tool_input: { command: (p.patterns || []).join(" ") },
        });
        await answer(client, p, out).catch(() => {});
        break;
      }
    }
  },
  "chat.message": async (input, output) => {
    const text = (output.parts || [])
      .filter((part) => part.type === "text" && !part.synthetic)
      .map((part) => part.text)
      .join("\n");
    await tell({ hook_event_name: "UserPromptSubmit", session_id: input.sessionID, prompt: text });
  },
  "tool.execute.before": async (input) => {
    await tell({ hook_event_name: "PreToolUse", tool_name: input.tool });
  },
  "tool.execute.after": async (input) => {
    await tell({ hook_event_name: "PostToolUse", tool_name: input.tool });
  },
});
