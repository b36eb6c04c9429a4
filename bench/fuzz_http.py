#!/usr/bin/env python3
"""Mutation fuzzer for the HTTP APIs of a running server (this script starts nothing).

Valid request bodies of every route (OpenAI chat / completions / Responses, Anthropic messages,
vLLM's tokenizer endpoints, with structured outputs, tools, streaming, logprobs, priorities, ...)
are mutated at random: fields deleted, replaced by hostile values (huge numbers, NaN, lone
surrogates, 10K-character strings, regexes that blow up automata, special-token text), lists
repeated, bodies cut short. Every reply must be a well-formed answer: a status below 500 (503 is
allowed: overloaded) whose error body is JSON with a message, or valid JSON / SSE; and the server
must stay healthy. Prints each failure with the request that caused it; exits 1 if there was any.

Usage: bench/fuzz_http.py HOST:PORT [--seconds 120] [--seed 1]
The server may run any --scheduling-policy: under fcfs the `priority` seeds are answered 400.
"""
import argparse
import copy
import http.client
import json
import random
import string
import sys
import time

ap = argparse.ArgumentParser(description="HTTP mutation fuzzer (see the module docstring)")
ap.add_argument("server", help="HOST:PORT of the OpenAI-compatible HTTP API")
ap.add_argument("--seconds", type=float, default=120)
ap.add_argument("--seed", type=int, default=1)
args = ap.parse_args()
HOST, PORT = args.server.rsplit(":", 1)
PORT = int(PORT)
SECONDS = args.seconds
rng = random.Random(args.seed)

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "w",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                       "days": {"type": "integer"}}, "required": ["city"]}}}
SCHEMA = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 5},
          "b": {"type": "array", "items": {"type": "integer"}, "maxItems": 3}},
          "required": ["a", "b"], "additionalProperties": False}
SEEDS = [
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}),
    ("/v1/chat/completions", {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                              "max_tokens": 6, "stream": True, "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 3}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "w"}], "tools": [TOOL], "tool_choice": "required", "max_tokens": 30}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "w"}, {"role": "assistant", "content": None,
                              "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"x\"}"}}]},
                              {"role": "tool", "tool_call_id": "c1", "content": "sunny"}], "tools": [TOOL], "max_tokens": 6}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "j"}], "max_tokens": 20,
                              "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": SCHEMA}}}),
    ("/v1/completions", {"prompt": "def f(x):", "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "top_k": 5, "min_p": 0.1,
                         "seed": 3, "stop": ["\n\n"], "n": 2, "repetition_penalty": 1.1}),
    ("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 4, "stream": True, "echo": True, "logprobs": 2}),
    ("/v1/completions", {"prompt": "def f(x):\n", "max_tokens": 24, "seed": 5, "temperature": 0.8, "stream": True,
                         "prediction": {"type": "content", "content": [{"type": "text", "text": "    return x\n"}]}}),
    ("/v1/completions", {"prompt": "x", "max_tokens": 10, "response_format": {"type": "json_object"}}),
    ("/v1/completions", {"prompt": "def ", "max_tokens": 12, "guided_regex": "[a-z_]{1,8}\\((self)?\\):"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "c"}], "max_tokens": 6, "structured_outputs": {"choice": ["yes", "no"]}}),
    ("/v1/completions", {"prompt": "x = ", "max_tokens": 24, "stream": True,
                         "grammar": "root ::= expr \"\\n\"\nexpr ::= term ((\" + \" | \" * \") term)*\nterm ::= [0-9]{1,3} | \"(\" expr \")\""}),
    ("/v1/completions", {"prompt": "y = ", "max_tokens": 24,
                         "grammar": "root ::= e \"\\n\"\ne ::= e [-+] t | t\nt ::= t \"*\" f | f\nf ::= [a-z] | \"(\" e \")\""}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "l"}], "max_tokens": 20,
                              "guided_grammar": "root ::= item (\", \" item){0,3}\nitem ::= [a-z\u00e9]+ | \"\\\"\" [^\"\\\\]* \"\\\"\""}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "j"}], "max_tokens": 40, "stream": True,
                              "guided_json": {"type": "object", "properties": {"n": {"type": "integer", "minimum": -3, "maximum": 70},
                              "x": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}, "d": {"type": "string", "format": "date"},
                              "p": {"type": "string", "pattern": "[A-Z]{2}\\d?", "maxLength": 3}}, "required": ["n", "x", "d", "p"]}}),
    ("/v1/completions", {"prompt": "import", "max_tokens": 10, "min_tokens": 4, "logit_bias": {"0": 50}, "stop": ["\n"],
                         "allowed_token_ids": [0, 5, 17, 300], "truncate_prompt_tokens": 1}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "f"}, {"role": "assistant", "content": "def f("}],
                              "max_tokens": 8, "continue_final_message": True, "cache_salt": "t1", "add_special_tokens": True}),
    ("/v1/responses", {"input": "hello", "max_output_tokens": 8, "priority": 3}),
    ("/v1/completions", {"prompt": "def ", "max_tokens": 40, "priority": -2, "ignore_eos": True, "return_token_ids": True}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "q"}], "max_tokens": 12, "stream": True, "n": 2,
                              "return_token_ids": True, "logprobs": True, "top_logprobs": 2, "return_tokens_as_token_ids": True,
                              "stream_options": {"include_usage": True, "continuous_usage_stats": True}}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "p"}], "max_tokens": 30, "priority": 7, "stream": True}),
    ("/v1/responses", {"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}], "instructions": "be brief",
                       "max_output_tokens": 8, "stream": True, "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]}),
    ("/v1/responses", {"input": "j", "max_output_tokens": 20, "text": {"format": {"type": "json_schema", "name": "n", "schema": SCHEMA}}}),
    ("/v1/messages", {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "system": "s"}),
    ("/v1/messages", {"max_tokens": 8, "stream": True, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                      {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]},
                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]}],
                      "tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"}}),
    ("/v1/messages/count_tokens", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/tokenize", {"prompt": "hello world"}),
    ("/tokenize", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/detokenize", {"tokens": [1, 2, 3]}),
]

WEIRD = [None, True, False, 0, -1, 1, 2**31, -2**63, 2**64, 1e308, -1e308, 0.5, -0.0, float("nan"), float("inf"),
         "", "x", "\u0000", "\ud800", "a" * 10000, "<|user|>", "</arg_value>", "\xff", [], {}, [[]], [None], {"": None},
         [1] * 5000, "0", "1e999", "(", "[", "a{1000}{1000}", "(.{0,30}){30}", "\\", "(?=x)", "[^\\s\\S]", "\\p{L}", ".*", {"type": None}, [{"type": "text"}], [{"role": "user"}]]


def rand_value(depth=0):
    r = rng.random()
    if r < 0.5 or depth > 3:
        return copy.deepcopy(rng.choice(WEIRD))
    if r < 0.7:
        return [rand_value(depth + 1) for _ in range(rng.randint(0, 3))]
    if r < 0.85:
        return {rng.choice(["type", "role", "content", "text", "name", "schema", "x"]): rand_value(depth + 1) for _ in range(rng.randint(0, 3))}
    return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 20)))


def paths(v, prefix=()):
    yield prefix
    if isinstance(v, dict):
        for k, x in v.items():
            yield from paths(x, prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from paths(x, prefix + (i,))


def get(v, p):
    for k in p:
        v = v[k]
    return v


def mutate(body):
    body = copy.deepcopy(body)
    for _ in range(rng.randint(1, 4)):
        ps = list(paths(body))
        p = rng.choice(ps)
        if not p:
            continue
        parent, key = get(body, p[:-1]), p[-1]
        op = rng.random()
        if op < 0.5:
            parent[key] = rand_value()
        elif op < 0.7:
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif op < 0.85:
            x = get(body, p)
            if isinstance(x, list):
                x.extend(copy.deepcopy(x) * rng.randint(1, 3))
            elif isinstance(x, dict):
                x[rng.choice(["type", "role", "content", "stream", "n", "tools", "extra"])] = rand_value()
        else:
            if isinstance(parent, dict):
                parent[rng.choice(["max_tokens", "n", "stream", "logprobs", "top_logprobs", "best_of", "tool_choice",
                                   "response_format", "stop", "logit_bias", "seed", "temperature", "guided_regex",
                                   "guided_choice", "guided_json", "guided_grammar", "grammar", "structured_outputs", "pattern", "minimum", "format",
                                   "min_tokens", "allowed_token_ids", "truncate_prompt_tokens", "bad_words", "cache_salt",
                                   "continue_final_message", "add_special_tokens", "chat_template", "echo", "priority",
                                   "return_token_ids", "return_tokens_as_token_ids", "continuous_usage_stats"])] = rand_value()
    return body


def send(path, raw, stream):
    conn = http.client.HTTPConnection(HOST, PORT, timeout=120)
    conn.request("POST", path, body=raw, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def check_reply(status, data, stream):
    if status >= 500 and status != 503:
        return f"status {status}"
    if status >= 400:
        try:
            e = json.loads(data)
            e = e.get("error", e)
            if not isinstance(e, dict) or not e.get("message"):
                return "error without message"
        except Exception:
            return "error body not JSON"
        return None
    if stream and data.startswith(b"data:") or b"\ndata:" in data[:50] or data.startswith(b"event:"):
        for line in data.split(b"\n"):
            if line.startswith(b"data: ") and line != b"data: [DONE]":
                try:
                    json.loads(line[6:])
                except Exception:
                    return f"bad SSE line {line[:100]!r}"
        return None
    try:
        json.loads(data)
    except Exception:
        return f"200 body not JSON {data[:100]!r}"
    return None


def healthy():
    try:
        conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except Exception:
        return False


end = time.time() + SECONDS
n = 0
fails = 0
codes = {}
while time.time() < end:
    path, seed = rng.choice(SEEDS)
    body = mutate(seed) if rng.random() < 0.95 else seed
    if rng.random() < 0.03:
        raw = json.dumps(body)[: rng.randint(0, 200)].encode()
    else:
        raw = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    stream = isinstance(body, dict) and body.get("stream") is True
    try:
        status, data = send(path, raw, stream)
        codes[status] = codes.get(status, 0) + 1
        why = check_reply(status, data, stream)
    except Exception as e:
        why = f"exception {e!r}"
    n += 1
    if why:
        fails += 1
        print(f"FAIL {path} {why}: {raw[:400]!r}", flush=True)
        if not healthy():
            print("SERVER DOWN after that request", flush=True)
            break
print(f"done: {n} requests, {fails} failures, codes {sorted(codes.items())}", flush=True)
sys.exit(1 if fails else 0)
