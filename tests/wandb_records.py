"""Reading an offline W&B run back: its .wandb file, record by record, with W&B's own protobuf
schema (wandb.proto.wandb_internal_pb2.Record).

The file is a LevelDB-style log, the framing W&B's SDK writes: a 7-byte header (``:W&B``,
magic 0xBEE1, version), then 32 KiB blocks of chunks, each a 7-byte header (CRC-32,
length, type: full, first, middle, last) and data; a record split over blocks is joined
from its chunks. wandb 0.31 no longer ships a Python reader of this framing (its writer and
reader live in wandb-core), so the framing is read here and each record parsed by wandb.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any, Iterator

BLOCK = 32 * 1024
HEADER = struct.Struct("<4sHB")  # ident, magic, version
CHUNK = struct.Struct("<IHB")  # checksum, length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """The file's records as wandb_internal_pb2.Record messages, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    ident, magic, _ = HEADER.unpack_from(data)
    assert ident == b":W&B" and magic == 0xBEE1, f"{path} is not a .wandb file"
    pos, parts = HEADER.size, []
    while pos + CHUNK.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < CHUNK.size:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = CHUNK.unpack_from(data, pos)
        if kind == 0:  # zero padding to the block's end
            pos += left
            continue
        body = data[pos + CHUNK.size:pos + CHUNK.size + length]
        pos += CHUNK.size + length
        parts = [body] if kind in (FULL, FIRST) else [*parts, body]
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(parts))
            yield record


def _value(item: Any) -> tuple[str, Any]:
    key = "/".join(item.nested_key) if item.nested_key else item.key
    return key, json.loads(item.value_json)


def read_run(path: Path) -> dict[str, Any]:
    """One .wandb file: {"run": the run record, "config": {key: value}, "history": [{key: value, "_step": n}, ...],
    "summary": {key: value}, "files": [saved file paths], "preempting": whether the run said so, "exit_code": int or None}.
    A nested key (a histogram's bins) reads as "tag/bins"."""
    out: dict[str, Any] = {"run": None, "config": {}, "history": [], "summary": {}, "files": [], "preempting": False, "exit_code": None}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            out["config"].update(dict(_value(item) for item in record.run.config.update))
        elif kind == "config":
            out["config"].update(dict(_value(item) for item in record.config.update))
        elif kind == "history":
            out["history"].append(dict(_value(item) for item in record.history.item))
        elif kind == "summary":
            out["summary"].update(dict(_value(item) for item in record.summary.update))
        elif kind == "files":
            out["files"] += [item.path for item in record.files.files]
        elif kind == "preempting":
            out["preempting"] = True
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def read_finished_run(path: Path, timeout: float = 60) -> dict[str, Any]:
    """read_run once the file holds the run's exit record. W&B's service writes the file on its
    own: run.finish() can return before the last records reach the disk (seen offline with
    wandb 0.31 on a busy machine), so a reader right after a run waits for the exit record."""
    deadline = time.monotonic() + timeout
    while True:
        run = read_run(path)
        if run["exit_code"] is not None or time.monotonic() > deadline:
            return run
        time.sleep(0.1)
