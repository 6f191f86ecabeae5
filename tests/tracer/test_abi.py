"""The ctypes mirror (yeet/tracer/abi.py) matches the C header and the shipped object."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from yeet.tracer import abi

HEADER = Path(__file__).resolve().parents[2] / "bpf" / "yeet_trace.h"

STRUCTS = {
    "yeet_file_id": abi.FileIdC,
    "yeet_key": abi.KeyC,
    "yeet_dir_key": abi.DirKeyC,
    "yeet_range": abi.RangeC,
    "yeet_dirty": abi.DirtyC,
    "yeet_config": abi.ConfigC,
    "yeet_event": abi.EventC,
}


def test_header_constants_match() -> None:
    text = HEADER.read_text()
    defines = dict(re.findall(r"#define (YEET_\w+)\s+(0x[0-9a-fA-F]+|\d+)", text))
    enums = dict(re.findall(r"\b(YEET_\w+) = (\d+),", text))
    values = {k: int(v, 0) for k, v in {**defines, **enums}.items()}
    assert values["YEET_ABI_VERSION"] == abi.ABI_VERSION
    assert values["YEET_MAX_RANGES"] == abi.MAX_RANGES
    assert values["YEET_PATH_DEPTH"] == abi.PATH_DEPTH
    assert values["YEET_NAME_LEN"] == abi.NAME_LEN
    for name in (
        "F_WHOLE",
        "F_MMAP",
        "F_OVERFLOW",
        "F_APPEND",
        "F_RACE",
        "F_TRUNC",
        "F_FLUX",
        "F_KWRITE",
        "EV_DIRTY",
        "EV_WRITE",
        "EV_PATH_TRUNC",
        "WATCH_SUBTREES",
        "WATCH_ALL",
        "WATCH_FS",
    ):
        assert values[f"YEET_{name}"] == getattr(abi, name), name
    for i, name in enumerate(abi.STAT_NAMES):
        assert values[f"YEET_STAT_{name.upper()}"] == i
    assert values["YEET_STAT_MAX"] == abi.STAT_MAX
    ops = {int(v): k for k, v in enums.items() if k.startswith("YEET_OP_") and k != "YEET_OP_MAX"}
    assert set(ops) == set(abi.OP_NAMES)
    assert re.search(r"YEET_OFF_END 0xffffffffffffffffULL", text)


def _btf_structs(obj: str) -> dict[str, dict[str, object]]:
    raw = subprocess.run(
        ["bpftool", "-j", "btf", "dump", "file", obj], check=True, capture_output=True, text=True
    ).stdout
    types = json.loads(raw)["types"]
    return {t["name"]: t for t in types if t["kind"] == "STRUCT" and t.get("name")}


@pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool not installed")
def test_struct_layouts_match_the_object() -> None:
    obj = str(resources.files("yeet.tracer").joinpath("yeet_trace.bpf.o"))
    btf = _btf_structs(obj)
    for cname, cls in STRUCTS.items():
        assert cname in btf, f"{cname} not in the object's BTF"
        t = btf[cname]
        assert t["size"] == ctypes.sizeof(cls), cname
        members = t["members"]
        assert isinstance(members, list)
        py = [(name, getattr(cls, name).offset) for name, *_ in cls._fields_]
        c = [(m["name"], m["bits_offset"] // 8) for m in members]
        assert py == c, cname
