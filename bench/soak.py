#!/usr/bin/env python3
"""Soak test: hours of mixed traffic against a running server, checking what must hold throughout.

Drives an already running server (this script starts nothing) over its OpenAI HTTP API and, with
build/bin/serve_bench, over gRPC, from several threads at once:

  load      serve_bench runs (gRPC and OpenAI chat) with random prompt/output lengths, sampled;
  agents    Anthropic /v1/messages and OpenAI /v1/responses requests, whole and streamed: 200
            and a well-formed end every time;
  structured  structured outputs (json_schema, json_object, guided_regex, a GBNF grammar, a schema of patterns, formats
            and numeric bounds) and forced tool calls over chat (n choices),
            completions, Responses and Anthropic: 200 every time, and every reply that ended with
            "stop" or a tool call parses and fits its format;
  hangups   streaming requests (chat, messages, responses) whose client closes the connection
            mid-stream (the generation must be cancelled and its KV blocks freed);
  bad       malformed or out-of-range requests: each must get a 4xx JSON error, never a 5xx or a
            dropped connection, and the server must keep serving;
  replay    one fixed multi-turn greedy conversation replayed over and over while the other
            threads churn the prefix cache: every replay must give exactly the first one's text
            (prefix-cache hits, evictions and batching must never change a token), or, with
            --replay-reference, the text another server configuration gave;
  monitor   every few seconds: RSS of every coordinator/shard_worker process, KV usage, running and
            waiting requests from /metrics.

At the end it waits for the server to go idle and checks that KV usage is back at zero, then prints
a summary (and JSON with --json) and exits 1 if any check failed.

Usage: bench/soak.py --http 127.0.0.1:8080 [--grpc 127.0.0.1:50051] [--minutes 10] [--json FILE]
                     [--replay-reference FILE] [--priorities]
Start the server with a small --kv-cache-gib (e.g. 0.02 on the bundled model) so that the prefix
cache evicts and requests queue for blocks while the soak runs.
"""
import argparse
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Soak:
    def __init__(self, args):
        self.args = args
        host, port = args.http.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.deadline = time.monotonic() + args.minutes * 60
        self.lock = threading.Lock()
        self.failures = []  # (check, detail)
        self.counts = {}  # name -> count
        self.samples = []  # monitor samples
        self.model = None
        self.max_len = None

    # ---- bookkeeping -------------------------------------------------------------------------
    def fail(self, check, detail):
        with self.lock:
            self.failures.append((check, detail))
        print(f"[soak] FAIL {check}: {detail}", file=sys.stderr, flush=True)

    def count(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def running(self):
        return time.monotonic() < self.deadline

    # ---- HTTP helpers ------------------------------------------------------------------------
    PRIORITY_PATHS = ("/v1/completions", "/v1/chat/completions", "/v1/responses")

    def request(self, method, path, body=None, timeout=120):
        if (self.args.priorities and method == "POST" and path in self.PRIORITY_PATHS and isinstance(body, dict)
                and "priority" not in body):
            # --priorities: requests of mixed priority preempt each other (the replayed
            # conversation's tokens must not change for it).
            body = dict(body, priority=random.randint(-2, 5))
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if data is not None else {}
            if self.args.api_key:
                headers["Authorization"] = f"Bearer {self.args.api_key}"
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace"), dict(resp.getheaders())
        finally:
            conn.close()

    def metrics(self):
        status, text, _ = self.request("GET", "/metrics", timeout=30)
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        values = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
            if not m or "rank=" in (m.group(2) or "") or "le=" in (m.group(2) or ""):
                continue  # per-rank series and histogram buckets: the totals are enough here
            values.setdefault(m.group(1), float(m.group(3)))
        return values

    # ---- workers -----------------------------------------------------------------------------
    def load_loop(self, backend, server, concurrency, seed0):
        bench = os.path.join(REPO, "build", "bin", "serve_bench")
        seed = seed0
        while self.running():
            seed += 1
            # Mostly short prompts, now and then a long one (chunked prefill, KV pressure).
            input_len = 1536 if seed % 5 == 0 else 256
            cmd = [bench, "--backend", backend, "--server", server, "--num-prompts", str(4 * concurrency),
                   "--max-concurrency", str(concurrency), "--input-len", str(input_len), "--output-len", "64",
                   "--random-range-ratio", "0.9", "--temperature", "0.8", "--seed", str(seed), "--json",
                   "--timeout-s", "600"]
            if self.args.api_key:
                cmd += ["--api-key", self.args.api_key]
            if backend != "grpc":
                cmd += ["--model", "any-name-at-all"]
            p = subprocess.run(cmd, capture_output=True, text=True)
            try:
                r = json.loads(p.stdout)
            except json.JSONDecodeError:
                r = None
            if r is None or p.returncode not in (0, 1):
                self.fail(f"load-{backend}", f"serve_bench exit {p.returncode}: {p.stderr.strip()[-400:]}")
                time.sleep(1)
                continue
            self.count(f"load-{backend}-requests", int(r.get("completed", 0)))
            failed = int(r.get("failed", 0))
            samples = r.get("error_samples", [])
            # A sampled chat reply of a few tokens that are all line breaks has no text once the
            # reply's leading blank lines are dropped (as GLM chat output's are): the server finished
            # it normally, but serve_bench, like vLLM's benchmark, counts a stream without text as
            # failed. Such replies are counted, not failed; anything else fails the soak.
            if failed and len(samples) == failed and all(self.empty_short_reply(e) for e in samples):
                self.count(f"load-{backend}-whitespace-replies", failed)
            elif failed:
                self.fail(f"load-{backend}", f"{failed} failed requests in a run (seed {seed}): {samples[:3]}")

    @staticmethod
    def empty_short_reply(error):
        """serve_bench's error for a stream that ended normally with a few tokens and no text."""
        m = re.search(r"the stream ended without output tokens \(\d+ SSE events, \[DONE\] received, "
                      r"finish_reason (length|stop), usage completion_tokens (\d+)\)", error)
        return m is not None and 1 <= int(m.group(2)) <= 16

    def hangup_loop(self, seed):
        rng = random.Random(seed)
        while self.running():
            content = "def f(x):" * rng.randint(1, 50)
            # The OpenAI chat, Anthropic messages and OpenAI responses streams, in turn at random.
            path, body = rng.choice([
                ("/v1/chat/completions", {"model": self.model, "stream": True, "max_tokens": 400, "ignore_eos": True,
                                          "messages": [{"role": "user", "content": content}]}),
                ("/v1/messages", {"model": "claude-x", "stream": True, "max_tokens": 400,
                                  "messages": [{"role": "user", "content": content}]}),
                ("/v1/responses", {"model": "gpt-x", "stream": True, "max_output_tokens": 400, "input": content}),
            ])
            sock = None
            try:
                sock = socket.create_connection((self.host, self.port), timeout=30)
                data = json.dumps(body).encode()
                key = f"x-api-key: {self.args.api_key}\r\n" if self.args.api_key else ""
                sock.sendall(f"POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n{key}".encode()
                             + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                # Read a little of the stream (or nothing), then vanish.
                want = rng.choice([0, 1, 200, 2000])
                got = b""
                while len(got) < want:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                if want and not got.startswith(b"HTTP/1.1 200"):
                    self.fail("hangup", f"stream answered {got[:80]!r}")
                self.count("hangups")
            except OSError as e:
                self.fail("hangup", f"connection error: {e}")
                time.sleep(1)
            finally:
                if sock is not None:
                    sock.close()
            time.sleep(rng.uniform(0.0, 0.3))

    BAD = [
        ("POST", "/v1/chat/completions", b"{not json", 400),
        ("POST", "/v1/chat/completions", {"messages": "hi"}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400),
        ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "top_p": 7}, 400),
        ("POST", "/v1/completions", {"prompt": [999999999]}, 400),
        ("POST", "/v1/completions", {"prompt": "hi", "n": 1000}, 400),
        ("POST", "/v1/completions", {"prompt": "hi", "logprobs": 1000}, 400),
        ("POST", "/v1/embeddings", {"input": "hi"}, 404),
        ("POST", "/v1/messages", {"messages": [{"role": "user", "content": "hi"}]}, 400),  # no max_tokens
        ("POST", "/v1/messages", {"max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "image"}]}]}, 400),
        ("POST", "/v1/messages", b"[1, 2", 400),
        ("POST", "/v1/responses", {"input": "hi", "previous_response_id": "resp_1"}, 400),
        ("POST", "/v1/responses", {"input": [{"type": "function_call_output"}]}, 400),
        ("POST", "/tokenize", {"prompt": 5}, 400),
        ("POST", "/detokenize", {"tokens": [-1]}, 400),
        ("GET", "/v1/nothing-here", None, 404),
    ]

    def bad_loop(self, seed):
        rng = random.Random(seed)
        bad = list(self.BAD)
        if self.max_len:  # past the served context: the prompt alone, or prompt plus max_tokens
            bad.append(("POST", "/v1/completions", {"prompt": [1] * (self.max_len + 1), "max_tokens": 1}, 400))
            bad.append(("POST", "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": self.max_len}, 400))
        while self.running():
            method, path, body, want = rng.choice(bad)
            try:
                status, text, _ = self.request(method, path, body, timeout=60)
            except OSError as e:
                self.fail("bad-input", f"{method} {path}: connection error {e}")
                time.sleep(1)
                continue
            ok = status == want
            if ok and status >= 400:
                try:
                    err = json.loads(text)["error"]
                    ok = bool(err.get("message")) and "type" in err
                except (ValueError, KeyError, TypeError, AttributeError):
                    ok = False
            if not ok:
                self.fail("bad-input", f"{method} {path} {str(body)[:60]}: {status} {text[:160]}")
            self.count("bad-requests")
            time.sleep(rng.uniform(0.05, 0.5))

    def agent_loop(self, seed):
        """Anthropic messages and OpenAI responses, whole and streamed: each must answer 200 with a
        well-formed end (the message object / its last event)."""
        rng = random.Random(seed)
        while self.running():
            stream = rng.random() < 0.5
            content = "import os\n" * rng.randint(1, 40)
            if rng.random() < 0.5:
                path, body = "/v1/messages", {"model": "claude-x", "max_tokens": rng.randint(1, 48), "stream": stream,
                                              "system": "You write Python.",
                                              "messages": [{"role": "user", "content": content}]}
                last = "event: message_stop"
            else:
                path, body = "/v1/responses", {"model": "gpt-x", "max_output_tokens": rng.randint(1, 48),
                                               "stream": stream, "instructions": "You write Python.", "input": content}
                last = "event: response."
            try:
                status, text, _ = self.request("POST", path, body, timeout=300)
            except OSError as e:
                self.fail("agent", f"{path}: connection error {e}")
                time.sleep(1)
                continue
            if status != 200:
                self.fail("agent", f"{path}: {status} {text[:160]}")
            elif stream:
                events = [b for b in text.split("\n\n") if b.strip() and not b.startswith(":")]
                if not events or not events[-1].startswith(last):
                    self.fail("agent", f"{path}: the stream ended with {events[-1][:120] if events else 'nothing'!r}")
            else:
                try:
                    reply = json.loads(text)
                    ok = reply.get("type") == "message" or reply.get("object") == "response"
                except ValueError:
                    ok = False
                if not ok:
                    self.fail("agent", f"{path}: {text[:160]}")
                elif path == "/v1/responses" and rng.random() < 0.5:
                    self.continue_response(reply, content)
            self.count("agent-requests")
            time.sleep(rng.uniform(0.0, 0.2))

    def continue_response(self, reply, content):
        """A stored reply continued with previous_response_id must prompt exactly what the whole
        conversation sent at once prompts (instructions are not carried over); then it is deleted."""
        follow = "and now the tests"
        cont = {"model": "gpt-x", "max_output_tokens": 2, "previous_response_id": reply["id"], "input": follow}
        whole = {"model": "gpt-x", "max_output_tokens": 2, "store": False,
                 "input": [{"role": "user", "content": content}] + reply["output"] + [{"role": "user", "content": follow}]}
        try:
            s1, t1, _ = self.request("POST", "/v1/responses", cont, timeout=300)
            s2, t2, _ = self.request("POST", "/v1/responses", whole, timeout=300)
            s3, t3, _ = self.request("DELETE", f"/v1/responses/{reply['id']}", None, timeout=60)
        except OSError as e:
            self.fail("responses-chain", f"connection error {e}")
            return
        if s1 != 200 or s2 != 200 or s3 != 200:
            self.fail("responses-chain", f"{s1} {t1[:120]} / {s2} {t2[:120]} / {s3} {t3[:80]}")
            return
        n1 = json.loads(t1)["usage"]["input_tokens"]
        n2 = json.loads(t2)["usage"]["input_tokens"]
        if n1 != n2:
            self.fail("responses-chain", f"continued prompt {n1} tokens, whole conversation {n2}")
        self.count("responses-continued")

    STRUCT_SCHEMA = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 12}, "size": {"type": "integer"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}}, "required": ["name", "size"]}
    STRUCT_REGEX = r"[a-z_]{1,12}\((self(, [a-z]{1,8})?)?\):"
    STRUCT_GBNF = 'root ::= name "(" ("self" (", " [a-z]{1,8})?)? "):"\nname ::= [a-z_]{1,12}'  # STRUCT_REGEX's language
    BOUNDED_SCHEMA = {"type": "object", "properties": {
        "n": {"type": "integer", "minimum": -3, "maximum": 70}, "x": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "d": {"type": "string", "format": "date"}, "p": {"type": "string", "pattern": "[A-Z]{2}\\d?", "maxLength": 3}},
        "required": ["n", "x", "d", "p"]}
    STRUCT_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {
        "key": {"type": "string", "maxLength": 10}, "limit": {"type": "integer"}}, "required": ["key"]}}}

    def structured_loop(self, seed):
        """Structured outputs and forced tool calls (chat with n choices, completions, Responses, Anthropic):
        200 every time, and every reply that ended with "stop" / a tool call parses and fits its format."""
        rng = random.Random(seed)
        fmt = {"type": "json_schema", "json_schema": {"name": "item", "schema": self.STRUCT_SCHEMA}}
        while self.running():
            kind = rng.choice(["chat", "completions", "responses", "messages", "tool", "regex", "bounds", "grammar"])
            content = "import os\n" * rng.randint(1, 30)
            msgs = [{"role": "user", "content": content}]
            temp = rng.choice([0, 0.8])
            if kind == "chat":
                path, body = "/v1/chat/completions", {"messages": msgs, "max_tokens": 64, "temperature": temp,
                                                      "n": rng.randint(1, 2), "response_format": fmt,
                                                      "stream": rng.random() < 0.3}
            elif kind == "completions":
                path, body = "/v1/completions", {"prompt": content, "max_tokens": 64, "temperature": temp,
                                                 "response_format": {"type": "json_object"}}
            elif kind == "responses":
                path, body = "/v1/responses", {"input": content, "max_output_tokens": 64, "temperature": temp,
                                               "text": {"format": {"type": "json_schema", "name": "item",
                                                                   "schema": self.STRUCT_SCHEMA}}}
            elif kind == "messages":
                path, body = "/v1/messages", {"max_tokens": 64, "messages": msgs, "temperature": temp,
                                              "output_format": {"type": "json_schema", "schema": self.STRUCT_SCHEMA}}
            elif kind == "regex":  # vLLM's guided_regex: the raw reply matches the pattern whole
                path, body = "/v1/completions", {"prompt": content + "def ", "max_tokens": 64, "temperature": temp,
                                                 "guided_regex": self.STRUCT_REGEX, "stream": rng.random() < 0.3}
            elif kind == "grammar":  # a GBNF grammar (llama.cpp's grammar, vLLM's guided_grammar): the regex's language
                path, body = "/v1/completions", {"prompt": content + "def ", "max_tokens": 64, "temperature": temp,
                                                 rng.choice(["grammar", "guided_grammar"]): self.STRUCT_GBNF,
                                                 "stream": rng.random() < 0.3}
            elif kind == "bounds":  # patterns, formats and numeric bounds in a schema (structured_outputs)
                path, body = "/v1/chat/completions", {"messages": msgs, "max_tokens": 96, "temperature": temp,
                                                      "structured_outputs": {"json": self.BOUNDED_SCHEMA}}
            else:
                path, body = "/v1/chat/completions", {"messages": msgs, "max_tokens": 64, "temperature": temp,
                                                      "tools": [self.STRUCT_TOOL], "tool_choice": "required",
                                                      "parallel_tool_calls": rng.random() < 0.5}
            try:
                status, text, _ = self.request("POST", path, body, timeout=300)
            except OSError as e:
                self.fail("structured", f"{path}: connection error {e}")
                time.sleep(1)
                continue
            self.count("structured-requests")
            if status != 200:
                self.fail("structured", f"{kind}: {status} {text[:160]}")
                continue
            if body.get("stream"):
                if not text.rstrip().endswith("data: [DONE]"):
                    self.fail("structured", f"{kind}: the stream ended with {text[-120:]!r}")
                continue
            try:
                reply = json.loads(text)
                if kind in ("chat", "completions", "tool", "regex", "bounds", "grammar"):
                    outs = [(c["finish_reason"], c.get("text") if kind in ("completions", "regex", "grammar") else c["message"])
                            for c in reply["choices"]]
                elif kind == "responses":
                    outs = [("stop" if reply["status"] == "completed" else "length",
                             reply["output"][-1]["content"][0]["text"])]
                else:
                    outs = [("stop" if reply["stop_reason"] == "end_turn" else "length", reply["content"][0]["text"])]
                for finish, out in outs:
                    if kind in ("regex", "grammar"):
                        if finish == "stop" and not re.fullmatch(self.STRUCT_REGEX, out):
                            raise ValueError(f"does not match the {kind}: {out!r}")
                        self.count("structured-complete", finish == "stop")
                        continue
                    if kind == "tool":
                        # Every complete call fits (a reply cut by max_tokens may hold some); one
                        # call only without parallel calls.
                        calls = out.get("tool_calls") or []
                        if finish == "tool_calls" and not calls:
                            raise ValueError("finish tool_calls without a call")
                        if not body["parallel_tool_calls"] and len(calls) > 1:
                            raise ValueError(f"{len(calls)} calls without parallel_tool_calls")
                        for c in calls:
                            args = json.loads(c["function"]["arguments"])
                            if c["function"]["name"] != "lookup" or not isinstance(args.get("key"), str):
                                raise ValueError(f"bad call {c}")
                        if calls:
                            self.count("structured-complete")
                        continue
                    if finish != "stop":
                        continue
                    value = json.loads(out if isinstance(out, str) else out["content"])
                    if not isinstance(value, dict):
                        raise ValueError(f"not an object: {value!r}")
                    if kind == "bounds":
                        if not (isinstance(value.get("n"), int) and -3 <= value["n"] <= 70 and
                                isinstance(value.get("x"), (int, float)) and 0 < value["x"] <= 1 and
                                re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.get("d", "")) and
                                re.fullmatch(r"[A-Z]{2}\d?", value.get("p", ""))):
                            raise ValueError(f"does not fit the bounds: {value!r}")
                    elif kind != "completions" and (not isinstance(value.get("name"), str) or
                                                    not isinstance(value.get("size"), int)):
                        raise ValueError(f"does not fit the schema: {value!r}")
                    self.count("structured-complete")
            except (ValueError, KeyError, TypeError, IndexError) as e:
                self.fail("structured", f"{kind}: {e}: {text[:200]}")
            time.sleep(rng.uniform(0.0, 0.2))

    def conversation(self):
        """One multi-turn greedy conversation: each turn's reply goes into the next turn's prompt."""
        messages = [{"role": "system", "content": "You write short Python functions."}]
        replies = []
        for turn in range(self.args.turns):
            messages.append({"role": "user", "content": f"Write function number {turn} that adds {turn} to x."})
            body = {"model": self.model, "messages": messages, "max_tokens": 48, "temperature": 0,
                    "ignore_eos": turn % 2 == 0}
            status, text, _ = self.request("POST", "/v1/chat/completions", body, timeout=300)
            if status != 200:
                return None, f"turn {turn}: {status} {text[:200]}"
            reply = json.loads(text)["choices"][0]["message"].get("content") or ""
            replies.append(reply)
            messages.append({"role": "assistant", "content": reply})
        return replies, None

    def replay_loop(self):
        reference = None
        if self.args.replay_reference and os.path.exists(self.args.replay_reference):
            # Another server configuration's replies (1 rank vs N, pipeline, speculation): greedy
            # decoding must give the same text on every one of them.
            with open(self.args.replay_reference) as f:
                reference = json.load(f)
        while self.running():
            replies, err = self.conversation()
            if err:
                # 429/503 under load are allowed answers, not wrong tokens: retry later.
                if err.split(":")[1].strip().startswith(("429", "503")):
                    self.count("replay-busy")
                else:
                    self.fail("replay", err)
                time.sleep(1)
                continue
            if reference is None:
                reference = replies
                if self.args.replay_reference:
                    with open(self.args.replay_reference, "w") as f:
                        json.dump(replies, f)
            elif len(replies) != len(reference):
                self.fail("replay", f"{len(replies)} turns, the reference has {len(reference)} (--turns differs?)")
            elif replies != reference:
                turn = next(i for i, (a, b) in enumerate(zip(replies, reference)) if a != b)
                got, want = replies[turn], reference[turn]
                at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                self.fail("replay", f"replay differs from the reference at turn {turn}, character {at}: "
                                    f"{got[max(0, at - 20):at + 40]!r} vs {want[max(0, at - 20):at + 40]!r}")
            self.count("replays")

    def pids(self):
        out = subprocess.run(["pgrep", "-x", "coordinator|shard_worker"], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    @staticmethod
    def comm(pid):
        try:
            with open(f"/proc/{pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return "?"

    @staticmethod
    def rss_mib(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024.0
        except OSError:
            return None
        return None

    def monitor_loop(self):
        start = time.monotonic()
        while self.running():
            try:
                m = self.metrics()
                sample = {"t": round(time.monotonic() - start, 1),
                          "kv_usage": m.get("vllm:kv_cache_usage_perc"),
                          "running": m.get("vllm:num_requests_running"),
                          "waiting": m.get("vllm:num_requests_waiting"),
                          "rss_mib": {f"{self.comm(p)} {p}": self.rss_mib(p) for p in self.pids()}}
                with self.lock:
                    self.samples.append(sample)
            except (OSError, RuntimeError) as e:
                self.fail("monitor", f"/metrics: {e}")
            time.sleep(self.args.monitor_s)

    # ---- run ---------------------------------------------------------------------------------
    def guarded(self, loop, *args):
        """Runs one loop; an exception escaping it is a finding, not a silently dead thread."""
        try:
            loop(*args)
        except Exception as e:  # noqa: BLE001
            self.fail(loop.__name__, f"{type(e).__name__}: {e}")

    def run(self):
        status, text, _ = self.request("GET", "/v1/models")
        if status != 200:
            raise SystemExit(f"soak.py: GET /v1/models answered {status}: {text[:200]}")
        self.model = json.loads(text)["data"][0]["id"]
        self.max_len = json.loads(text)["data"][0].get("max_model_len")
        loops = [(self.monitor_loop,), (self.replay_loop,), (self.hangup_loop, 11), (self.bad_loop, 12),
                 (self.agent_loop, 13), (self.structured_loop, 14),
                 (self.load_loop, "openai-chat", f"{self.host}:{self.port}", 2, 2000)]
        if self.args.grpc:
            loops.append((self.load_loop, "grpc", self.args.grpc, 6, 1000))
        threads = [threading.Thread(target=self.guarded, args=loop, daemon=True) for loop in loops]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Idle: every generation finished or cancelled, so no KV block may stay in use.
        idle_by = time.monotonic() + 60
        m = {}
        while time.monotonic() < idle_by:
            try:
                m = self.metrics()
            except (OSError, RuntimeError) as e:
                self.fail("idle", f"/metrics after the traffic stopped: {e}")
                break
            if not m.get("vllm:num_requests_running") and not m.get("vllm:num_requests_waiting") and \
                    not m.get("vllm:kv_cache_usage_perc"):
                break
            time.sleep(0.5)
        else:
            self.fail("idle", f"after the traffic stopped: running {m.get('vllm:num_requests_running')}, waiting "
                              f"{m.get('vllm:num_requests_waiting')}, KV usage {m.get('vllm:kv_cache_usage_perc')}")
        self.report()

    def report(self):
        rss_first, rss_last = {}, {}
        for s in self.samples:
            for pid, v in s["rss_mib"].items():
                if v is not None:
                    rss_first.setdefault(pid, v)
                    rss_last[pid] = v
        # RSS after the first tenth of the run (warm: caches, arenas, thread stacks) vs the end.
        warm = self.samples[len(self.samples) // 10]["rss_mib"] if self.samples else {}
        # Growth over the second half of the run, per hour: a leak shows as a steady slope.
        half = [s for s in self.samples if s["t"] >= self.samples[-1]["t"] / 2] if self.samples else []
        slope = {}
        for pid in rss_first:
            pts = [(s["t"], s["rss_mib"].get(pid)) for s in half if s["rss_mib"].get(pid) is not None]
            if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
                slope[pid] = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]) * 3600
        summary = {"minutes": self.args.minutes, "counts": self.counts, "samples": self.samples,
                   "failures": [{"check": c, "detail": d} for c, d in self.failures],
                   "rss_mib": {pid: {"first": rss_first[pid], "warm": warm.get(pid), "last": rss_last[pid],
                                     "second_half_mib_per_hour": slope.get(pid)} for pid in rss_first},
                   "max_kv_usage": max((s["kv_usage"] or 0) for s in self.samples) if self.samples else None,
                   "max_waiting": max((s["waiting"] or 0) for s in self.samples) if self.samples else None}
        print(f"soak: {self.args.minutes} min, " + ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())))
        for pid, r in summary["rss_mib"].items():
            growth = r["second_half_mib_per_hour"]
            print(f"  {pid}: RSS {r['first']:.0f} MiB at start, {r['warm'] or 0:.0f} warm, {r['last']:.0f} at the end"
                  + (f" ({growth:+.1f} MiB/hour over the second half)" if growth is not None else ""))
        print(f"  max KV usage {summary['max_kv_usage']}, max waiting {summary['max_waiting']}")
        print(f"  {len(self.failures)} failures" + "".join(f"\n    {c}: {d}" for c, d in self.failures[:20]))
        if self.args.json:
            with open(self.args.json, "w") as f:
                json.dump(summary, f, indent=1)
        sys.exit(1 if self.failures else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--http", required=True, help="HOST:PORT of the OpenAI HTTP API")
    ap.add_argument("--grpc", default="", help="HOST:PORT of the gRPC API (adds a gRPC load thread)")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--turns", type=int, default=8, help="turns of the replayed conversation")
    ap.add_argument("--monitor-s", type=float, default=5)
    ap.add_argument("--replay-reference", default="",
                    help="JSON file of the replayed conversation's replies: compared against when it exists, "
                         "else written from the first replay (to check one server configuration against another)")
    ap.add_argument("--json", default="", help="also write the summary here")
    ap.add_argument("--priorities", action="store_true",
                    help="give the HTTP requests random priorities in [-2, 5] (a server with --scheduling-policy priority)")
    ap.add_argument("--api-key", default=os.environ.get("GLM_API_KEY", ""),
                    help="the server's --api-key (default $GLM_API_KEY)")
    Soak(ap.parse_args()).run()


if __name__ == "__main__":
    main()
