#!/usr/bin/env python3
"""A small Conflux agent for the orchestration patterns (Python 3, standard library only).

It registers for the roles given on its command line, long-polls for tasks, and answers
each one in the shape its pattern expects, read from the task input's "action":

  plan     (supervisor, hierarchical)  -> {"steps": [...]}
  work     (a worker's step)           -> {"result": ...}
  review   (supervisor, hierarchical)  -> {"verdict": "accept" | "revise", "feedback", "result"}
  handoff  (handoff)                   -> {"next": <the role after its own in "roles", or null>, "result"}
  answer   (swarm)                     -> {"answer": ...}
  vote     (swarm)                     -> {"result": <the most common answer>, "votes": {answer: count}}
  merge    (swarm)                     -> {"result": [every answer]}
  message  (network)                   -> sends one signal per peer in "send", then {"heard", ...}

Usage:
  python3 examples/agents/pattern_agent.py --url http://127.0.0.1:8080 --token "$CONFLUX_TOKEN" \
      supervisor worker

--url and --token default to $CONFLUX_URL and $CONFLUX_TOKEN. --revise-rounds N makes a
review ask for another round while the round is at most N (default 1), so a supervisor
loop runs twice; --steps N is how many steps a plan has (default 2, at most max_steps).
Stop it with Ctrl-C or SIGTERM.
"""

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


class Api:
    """The few HTTP calls an agent makes, with the bearer token on each."""

    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.token = token

    def post(self, path, body=None, timeout=30):
        data = json.dumps(body if body is not None else {}).encode()
        request = urllib.request.Request(self.base + path, data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        request.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read().decode() or "{}"
                return response.status, json.loads(text)
        except urllib.error.HTTPError as error:
            text = error.read().decode() or "{}"
            try:
                return error.code, json.loads(text)
            except ValueError:
                return error.code, {"raw": text}


def log(*parts):
    print("pattern_agent:", *parts, file=sys.stderr, flush=True)


def plan(args, task):
    data = task["input"]
    if data.get("branches") is not None:
        count = int(data["branches"])
    else:
        count = max(1, min(int(data.get("max_steps") or args.steps), args.steps))
    subject = data.get("task")
    note = " (revised: {})".format(data["feedback"]) if data.get("feedback") else ""
    return {"steps": ["{} / part {}{}".format(subject, i + 1, note) for i in range(count)]}


def work(args, task):
    data = task["input"]
    return {"result": "done: {}".format(data.get("step")), "index": data.get("index")}


def review(args, task):
    data = task["input"]
    round_ = int(data.get("round") or 1)
    revise = round_ <= args.revise_rounds and not data.get("last_round")
    result = {"task": data.get("task"), "round": round_, "results": data.get("results")}
    if revise:
        return {"verdict": "revise", "feedback": "round {} needs more detail".format(round_),
                "result": result}
    return {"verdict": "accept", "feedback": None, "result": result}


def handoff(args, task):
    data = task["input"]
    roles, me = data.get("roles") or [], data.get("me")
    after = roles.index(me) + 1 if me in roles else len(roles)
    nxt = roles[after] if after < len(roles) and not data.get("last_hop") else None
    trail = (data.get("previous") or {}).get("trail", []) if isinstance(data.get("previous"), dict) else []
    return {"next": nxt, "result": {"trail": trail + [me], "task": data.get("task")}}


def answer(args, task):
    data = task["input"]
    return {"answer": "answer to {}".format(data.get("task")), "index": data.get("index")}


def vote(args, task):
    votes = {}
    for item in task["input"].get("answers") or []:
        key = json.dumps(item.get("answer") if isinstance(item, dict) else item)
        votes[key] = votes.get(key, 0) + 1
    winner = max(votes, key=votes.get) if votes else "null"
    return {"result": json.loads(winner), "votes": votes}


def merge(args, task):
    answers = task["input"].get("answers") or []
    return {"result": [a.get("answer") if isinstance(a, dict) else a for a in answers]}


def message(args, task, api):
    data = task["input"]
    me, round_ = data.get("me"), data.get("round")
    for peer, name in sorted((data.get("send") or {}).items()):
        path = "/api/v1/executions/{}/signals/{}".format(
            task["execution_id"], urllib.parse.quote(name, safe=""))
        payload = {"from": me, "to": peer, "round": round_,
                   "text": "{} to {}: my view of {} in round {}".format(me, peer, data.get("task"), round_)}
        status, body = api.post(path, {"payload": payload})
        if status != 202:
            raise RuntimeError("signal {} answered {}: {}".format(name, status, body))
    return {"me": me, "round": round_, "heard": data.get("inbox") or {},
            "sent": sorted((data.get("send") or {}).keys())}


ACTIONS = {"plan": plan, "work": work, "review": review, "handoff": handoff,
           "answer": answer, "vote": vote, "merge": merge}


def handle(args, api, task):
    action = (task.get("input") or {}).get("action")
    if action == "message":
        return message(args, task, api)
    if action not in ACTIONS:
        raise ValueError("unknown action {!r}".format(action))
    return ACTIONS[action](args, task)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roles", nargs="+", help="the roles to serve")
    parser.add_argument("--url", default=os.environ.get("CONFLUX_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("CONFLUX_TOKEN", ""))
    parser.add_argument("--name", default=None, help="the agent's name (default: its roles)")
    parser.add_argument("--revise-rounds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--wait-ms", type=int, default=2000)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    api = Api(args.url, args.token)
    name = args.name or "pattern-agent-" + "+".join(args.roles)
    status, body = api.post("/api/v1/agents", {"name": name, "roles": args.roles, "capacity": 20})
    if status != 201:
        log("register answered", status, body)
        return 1
    agent = body["agent_id"]
    log("registered", agent, "for", ", ".join(args.roles))
    poll = "/api/v1/agents/{}/poll?max=10&wait_ms={}".format(agent, args.wait_ms)
    while True:
        try:
            status, body = api.post(poll, timeout=args.wait_ms / 1000 + 30)
        except (urllib.error.URLError, OSError) as error:
            log("poll failed:", error)
            time.sleep(0.5)
            continue
        if status != 200:
            log("poll answered", status, body)
            time.sleep(0.5)
            continue
        for task in body.get("tasks", []):
            lease = task["lease_id"]
            try:
                output = handle(args, api, task)
            except Exception as error:  # report every failure as the task's, not the agent's
                log("task", task.get("task_id"), "failed:", error)
                api.post("/api/v1/tasks/{}/fail".format(lease), {"error": str(error), "retryable": False})
                continue
            status, answered = api.post("/api/v1/tasks/{}/complete".format(lease), {"output": output})
            log(task.get("task_id"), "->", status if status != 200 else "completed")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
