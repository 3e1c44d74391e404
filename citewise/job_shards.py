"""The shards of one ingest job, in Redis: which wait, who holds which, what each one did.

A large ingest job is cut into shards (batches of files, ``ingest.sharding``). Their board
lives under ``<prefix>:ingest-run:<job id>:`` so that any ``citewise worker`` sharing the Redis
can take one:

- ``shards``: shard number -> its description (JSON the ingest face writes and reads);
- ``pending``: the numbers still to take, in order;
- ``leases``: numbers being worked on, scored by the Redis time (ms) their lease ends;
  ``holders``: number -> the lease's token (who holds it), so a worker whose lease ran out and
  was handed on can neither renew it nor report the shard done;
- ``results``: number -> what its worker did (JSON); ``completed``: the numbers in the order
  they finished, for the job's coordinator to block on;
- ``state``: the counters the job's progress shows (files parsed per shard, shards done,
  shards handed on), each shard's attempts, and how many helper jobs wait on the queue;
- ``alive``: set while the coordinator runs, with a lifetime it keeps renewing.

Every step is one Lua script, so two workers never take the same shard, and deadlines use the
Redis server's clock, so workers on machines whose clocks disagree still agree on them. A shard
whose lease ends unrenewed (its worker died) goes back to ``pending``, at most ``ATTEMPTS``
times in all. The coordinator renews ``alive`` while it runs; helpers take no shard without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

ATTEMPTS = 3  # a shard whose workers died this many times fails the job
_TTL_S = 7 * 86400  # the board outlives no job record (CITEWISE_JOB_RESULT_TTL_S, at most)

_TAKE = """
local n = redis.call('LPOP', KEYS[1])
if not n then return false end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), n)
redis.call('HSET', KEYS[3], n, ARGV[1])
redis.call('HINCRBY', KEYS[5], 'attempts:' .. n, 1)
return {n, redis.call('HGET', KEYS[4], n)}
"""
_RENEW = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3]), ARGV[1])
return 1
"""
_COMPLETE = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[5], 'shards_done', 1)
redis.call('RPUSH', KEYS[4], ARGV[1])
return 1
"""
_RECLAIM = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
local back = {}
for _, n in ipairs(expired) do
  redis.call('ZREM', KEYS[1], n)
  redis.call('HDEL', KEYS[2], n)
  redis.call('RPUSH', KEYS[3], n)
  redis.call('HINCRBY', KEYS[4], 'retried', 1)
  redis.call('HSET', KEYS[4], 'files:' .. n, 0)
  table.insert(back, n)
end
return back
"""


@dataclass(frozen=True)
class Lease:
    """A shard taken by one worker: its number, description and the token that proves it."""

    number: int
    description: str
    token: str


class ShardBoard:
    """One job's shards in Redis (sync: called from the worker's job, never the event loop)."""

    def __init__(self, connection: redis.Redis, prefix: str, job_id: str) -> None:
        self._redis = connection
        base = f"{prefix}:ingest-run:{job_id}:"
        self._shards, self._pending = base + "shards", base + "pending"
        self._leases, self._holders = base + "leases", base + "holders"
        self._results, self._completed = base + "results", base + "completed"
        self._state, self._alive = base + "state", base + "alive"
        self._keys = [self._shards, self._pending, self._leases, self._holders]
        self._keys += [self._results, self._completed, self._state]

    def publish(self, descriptions: list[str], files: int) -> None:
        """Put the shards on the board, all pending (a board of the same job is replaced)."""
        with self._redis.pipeline() as pipe:
            pipe.delete(*self._keys)
            pipe.hset(self._shards, mapping=dict(enumerate(descriptions)))
            pipe.rpush(self._pending, *range(len(descriptions)))
            pipe.hset(
                self._state,
                mapping={"shards_total": len(descriptions), "shards_done": 0, "retried": 0,
                         "files_total": files},
            )  # fmt: skip
            for key in self._keys:
                pipe.expire(key, _TTL_S)
            pipe.execute()

    def take(self, token: str, lease_s: float) -> Lease | None:
        """The next pending shard, leased to ``token`` for ``lease_s``; None if none waits."""
        keys = [self._pending, self._leases, self._holders, self._shards, self._state]
        taken = self._redis.eval(_TAKE, len(keys), *keys, token, int(lease_s * 1000))
        if not taken:
            return None
        number, description = taken
        return Lease(int(number), _text(description), token)

    def renew(self, lease: Lease, lease_s: float) -> bool:
        """Extend ``lease``; False if it ran out and the shard was handed on."""
        keys = [self._leases, self._holders]
        args: list[str | int] = [lease.number, lease.token, int(lease_s * 1000)]
        return bool(self._redis.eval(_RENEW, len(keys), *keys, *args))

    def complete(self, lease: Lease, result: dict[str, Any]) -> bool:
        """Record what the shard did; False (nothing recorded) if the lease was lost."""
        keys = [self._leases, self._holders, self._results, self._completed, self._state]
        args: list[str | int] = [lease.number, lease.token, json.dumps(result)]
        return bool(self._redis.eval(_COMPLETE, len(keys), *keys, *args))

    def reclaim(self) -> list[int]:
        """Put the shards whose leases ran out back in ``pending``; their numbers."""
        keys = [self._leases, self._holders, self._pending, self._state]
        return [int(n) for n in self._redis.eval(_RECLAIM, len(keys), *keys)]

    def attempts(self, number: int) -> int:
        raw = self._redis.hget(self._state, f"attempts:{number}")
        return int(raw or 0)

    def next_completed(self, timeout_s: float) -> int | None:
        """Block until a shard is reported done (its number) or ``timeout_s`` passes (None)."""
        popped = self._redis.blpop([self._completed], timeout=timeout_s)
        return None if popped is None else int(popped[1])

    def result(self, number: int) -> dict[str, Any]:
        raw = self._redis.hget(self._results, str(number))
        return dict(json.loads(_text(raw))) if raw is not None else {}

    def pop_completed(self) -> int | None:
        """A shard reported done and not yet popped, without waiting."""
        popped = self._redis.lpop(self._completed)
        return None if popped is None else int(_text(popped))

    def file_done(self, lease: Lease) -> None:
        """Count one file of ``lease``'s shard as parsed (reset if the shard is handed on)."""
        self._redis.hincrby(self._state, f"files:{lease.number}", 1)

    def files_of(self, number: int) -> int:
        """Files of shard ``number`` parsed by its current holder."""
        return int(self._redis.hget(self._state, f"files:{number}") or 0)

    def helper_queued(self, change: int) -> None:
        """Count a helper job queued (+1) or started (-1)."""
        self._redis.hincrby(self._state, "helpers_queued", change)

    def helpers_queued(self) -> int:
        return int(self._redis.hget(self._state, "helpers_queued") or 0)

    def waiting(self) -> int:
        """Shards not yet taken."""
        return int(self._redis.llen(self._pending))

    def leased(self) -> dict[int, str]:
        """Shards being worked on now: number -> the token of the worker holding it."""
        return {int(n): _text(t) for n, t in self._redis.hgetall(self._holders).items()}

    def mark_alive(self, lease_s: float) -> None:
        """The coordinator is running: helpers may take shards for ``lease_s`` from now."""
        self._redis.set(self._alive, 1, px=int(lease_s * 1000))

    def alive(self) -> bool:
        return bool(self._redis.exists(self._alive))

    def close(self) -> None:
        """The job has ended: helpers stop taking shards (the counters stay to be read)."""
        with self._redis.pipeline() as pipe:
            pipe.delete(self._alive, self._pending, self._leases, self._holders, self._shards)
            pipe.delete(self._completed, self._results)
            pipe.execute()

    def progress(self) -> dict[str, int]:
        """Files and shards done of the totals, and how many shards were handed on."""
        raw = {_text(k): int(v) for k, v in self._redis.hgetall(self._state).items()}
        fields = ("files_total", "shards_done", "shards_total", "retried")
        counts = {name: raw.get(name, 0) for name in fields}
        counts["files_done"] = sum(v for k, v in raw.items() if k.startswith("files:"))
        return counts


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
