"""Drives Palaver's /v1 with the official openai Python SDK; prints one JSON object.

Run by tests/api/openai_sdk.rs with PALAVER_BASE (the server) and PALAVER_JWT (a user's token).
"""
import json
import os
import sys
import urllib.request

import openai

base = os.environ["PALAVER_BASE"]
jwt = os.environ["PALAVER_JWT"]


def mint_key():
    """An API key, minted with the user's JWT (plain HTTP: the SDK has no such call)."""
    req = urllib.request.Request(
        base + "/api/v1/ai/keys",
        data=json.dumps({"name": "python-sdk"}).encode(),
        headers={"Authorization": "Bearer " + jwt, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req) as res:
        return json.load(res)["key"]


def usage_of(u):
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.total_tokens}


def main():
    client = openai.OpenAI(base_url=base + "/v1", api_key=mint_key(), max_retries=0)
    out = {"sdk": "python", "version": openai.__version__}
    out["models"] = sorted(m.id for m in client.models.list())
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name three colours"}]
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=messages, user="py-user")
    out["plain"] = plain.choices[0].message.content
    out["plain_finish"] = plain.choices[0].finish_reason
    out["plain_usage"] = usage_of(plain.usage)
    text, usage, finish = [], None, None
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True,
        stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage is not None:
            usage = usage_of(chunk.usage)
            assert chunk.choices == [], chunk
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    out["streamed"] = "".join(text)
    out["stream_finish"] = finish
    out["stream_usage"] = usage
    # The SDK asks for base64 by default and decodes it.
    emb = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    out["embeddings"] = [d.embedding for d in emb.data]
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="x")
    wire = json.loads(raw.http_request.content)
    out["embedding_format_sent"] = wire.get("encoding_format")
    try:
        client.models.retrieve("gpt-9")
        out["not_found"] = None
    except openai.NotFoundError as e:
        out["not_found"] = type(e).__name__ + ":" + str(e.code)
    bad = openai.OpenAI(base_url=base + "/v1", api_key="pal_revoked-or-made-up", max_retries=0)
    try:
        bad.models.list()
        out["auth_error"] = None
    except openai.AuthenticationError as e:
        out["auth_error"] = type(e).__name__ + ":" + str(e.code)
    try:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
        out["bad_request"] = None
    except openai.BadRequestError as e:
        out["bad_request"] = type(e).__name__ + ":" + str(e.param)
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the Rust test shows what failed
        print(json.dumps({"error": repr(e)}))
        sys.exit(1)
