// Drives Palaver's /v1 with the official openai npm package; prints one JSON object.
// Run by tests/api/openai_sdk.rs with PALAVER_BASE (the server) and PALAVER_JWT (a user's token).
import OpenAI from "openai";

const base = process.env.PALAVER_BASE;
const jwt = process.env.PALAVER_JWT;

// An API key, minted with the user's JWT (plain HTTP: the SDK has no such call).
async function mintKey() {
  const res = await fetch(`${base}/api/v1/ai/keys`, {
    method: "POST",
    headers: { Authorization: `Bearer ${jwt}`, "Content-Type": "application/json" },
    body: JSON.stringify({ name: "node-sdk" }),
  });
  return (await res.json()).key;
}

const usageOf = (u) => ({
  prompt_tokens: u.prompt_tokens,
  completion_tokens: u.completion_tokens,
  total_tokens: u.total_tokens,
});

async function errorOf(call, Type, field) {
  try {
    await call();
    return null;
  } catch (e) {
    if (!(e instanceof Type)) throw e;
    return `${e.constructor.name}:${e[field]}`;
  }
}

async function main() {
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: await mintKey(), maxRetries: 0 });
  const out = { sdk: "node" };
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  out.models = models.sort();
  const messages = [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Name three colours" },
  ];
  const plain = await client.chat.completions.create({ model: "gpt-4o-mini", messages, user: "js-user" });
  out.plain = plain.choices[0].message.content;
  out.plain_finish = plain.choices[0].finish_reason;
  out.plain_usage = usageOf(plain.usage);
  const stream = await client.chat.completions.create({
    model: "gpt-4o-mini", messages, stream: true, stream_options: { include_usage: true },
  });
  let text = "", usage = null, finish = null;
  for await (const chunk of stream) {
    if (chunk.usage) {
      usage = usageOf(chunk.usage);
      if (chunk.choices.length !== 0) throw new Error("the usage chunk has choices");
    }
    for (const c of chunk.choices) {
      text += c.delta.content ?? "";
      finish = c.finish_reason ?? finish;
    }
  }
  out.streamed = text;
  out.stream_finish = finish;
  out.stream_usage = usage;
  // The SDK asks for base64 by default and decodes it.
  const emb = await client.embeddings.create({ model: "text-embedding-3-small", input: ["hello world", "bye"] });
  out.embeddings = emb.data.map((d) => Array.from(d.embedding));
  // What the SDK asked for on the wire (its default): the raw body of the answer says.
  const raw = await client.embeddings.create({ model: "text-embedding-3-small", input: "x" }).asResponse();
  out.embedding_format_sent = typeof (await raw.json()).data[0].embedding === "string" ? "base64" : "float";
  out.not_found = await errorOf(() => client.models.retrieve("gpt-9"), OpenAI.NotFoundError, "code");
  const bad = new OpenAI({ baseURL: `${base}/v1`, apiKey: "pal_revoked-or-made-up", maxRetries: 0 });
  out.auth_error = await errorOf(() => bad.models.list(), OpenAI.AuthenticationError, "code");
  out.bad_request = await errorOf(
    () => client.chat.completions.create({ model: "gpt-4o-mini", messages: [] }),
    OpenAI.BadRequestError, "param");
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.log(JSON.stringify({ error: String(e && e.stack || e) }));
  process.exit(1);
});
