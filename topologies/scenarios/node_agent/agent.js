#!/usr/bin/env node
// A coding-agent CLI on Node (no npm packages): the same loop as agent_main.py, in the
// shape of the Node coding CLIs (OpenAI chat-completions wire format, a shell tool, file
// tools, HTTP). Reads one JSON task per line on stdin, prints {"done": id, "error": ""}.
// Names resolve through the pod's DNS (AGENTSTORY_POD_DNS), never the host's resolver;
// TLS trusts the recording's CA (SSL_CERT_FILE).
"use strict";
const fs = require("fs");
const https = require("https");
const dns = require("dns");
const readline = require("readline");
const { spawnSync } = require("child_process");

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const ca = fs.readFileSync(cfg.ca);
const resolver = new dns.Resolver();
resolver.setServers([process.env.AGENTSTORY_POD_DNS]);

function lookup(host, options, callback) {
  if (typeof options === "function") { callback = options; options = {}; }
  resolver.resolve4(host, (err, addrs) => {
    if (err || !addrs.length) return callback(err || new Error("ENOTFOUND " + host));
    if (options && options.all) return callback(null, addrs.map((a) => ({ address: a, family: 4 })));
    callback(null, addrs[0], 4);
  });
}

function request(url, { method = "GET", headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = https.request({ hostname: u.hostname, port: u.port || 443, path: u.pathname + u.search,
      method, headers, ca, lookup, servername: u.hostname }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, text: Buffer.concat(chunks).toString() }));
    });
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const TOOLS = {
  read_file: { params: ["path"], run: (a) => fs.readFileSync(a.path, "utf8").slice(0, 4000) },
  write_file: { params: ["path", "content"], run: (a) => {
    fs.mkdirSync(require("path").dirname(a.path), { recursive: true });
    fs.writeFileSync(a.path, a.content); return `wrote ${a.content.length} bytes to ${a.path}`; } },
  run: { params: ["command"], run: (a) => {
    const p = spawnSync("/bin/sh", ["-c", a.command], { cwd: cfg.workdir, encoding: "utf8", timeout: 60000 });
    return `exit ${p.status}\n${(p.stdout || "").slice(-2000)}${(p.stderr || "").slice(-1000)}`; } },
  http: { params: ["url"], run: async (a) => {
    const r = await request(a.url, { method: a.method || "GET", headers: { "user-agent": "node-agent/1.0" },
      body: a.body === undefined ? undefined : JSON.stringify(a.body) });
    return `${r.status}\n${r.text.slice(0, 4000)}`; } },
};

function specs() {
  return (cfg.tools || []).filter((t) => TOOLS[t]).map((name) => ({ type: "function", function: {
    name, description: name, parameters: { type: "object",
      properties: Object.fromEntries(TOOLS[name].params.map((p) => [p, { type: "string" }])),
      required: TOOLS[name].params } } }));
}

async function runTask(task) {
  const messages = [{ role: "system", content: cfg.system || "You are a coding agent." },
    { role: "user", content: task.prompt }];
  for (let turn = 0; turn < 16; turn++) {
    const r = await request("https://api.openai.com/v1/chat/completions", { method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer sk-rec-${cfg.name}`,
        "user-agent": "node-coding-cli/0.3.1" },
      body: JSON.stringify({ model: cfg.model, messages, tools: specs() }) });
    const msg = JSON.parse(r.text).choices[0].message;
    if (!msg.tool_calls || !msg.tool_calls.length) return;
    messages.push({ role: "assistant", content: msg.content, tool_calls: msg.tool_calls });
    for (const call of msg.tool_calls) {
      let out;
      try { out = String(await TOOLS[call.function.name].run(JSON.parse(call.function.arguments))); }
      catch (e) { out = `error: ${e.message}`; }
      messages.push({ role: "tool", tool_call_id: call.id, content: out.slice(0, 4000) });
    }
  }
}

const rl = readline.createInterface({ input: process.stdin });
const queue = [];
let busy = false;
async function drain() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const task = queue.shift();
    let error = "";
    try { await runTask(task); } catch (e) { error = String(e && e.message || e); }
    process.stdout.write(JSON.stringify({ done: task.id, error }) + "\n");
  }
  busy = false;
}
rl.on("line", (line) => { if (line.trim()) { queue.push(JSON.parse(line)); drain(); } });
