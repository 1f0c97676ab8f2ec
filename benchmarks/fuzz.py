"""Fuzzing: untrusted bytes under atheris (libFuzzer), the HTTP API under schemathesis.

    python -m benchmarks.fuzz --runs 200000 --examples 100 [--codec default]

**atheris** targets, chosen by the first input byte: the bitstream parser and entropy decoder
(``Codec.latents``), the full decoder (``Codec.decode``), the image loader used by
``add``/``search`` (``mostore.data.load_image``), and the entropy decoder fed garbage payloads
inside a valid header with a correct checksum (so mutations are not all stopped by the CRC). The
corpus starts from valid bitstreams and small images. Any exception that is not a
:class:`mostore.MostoreError` is a crash: libFuzzer stops, prints the input and exits non-zero;
an input running longer than 10 s is a hang and fails the same way.

**schemathesis** loads the running server's own OpenAPI schema and, for every operation, sends
``--examples`` generated requests (and each again against a table that exists, to get past the
404s); any 5xx is a failure. Both write ``benchmarks/results/fuzz.json``.
"""

from __future__ import annotations

import argparse
import atexit
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.reliability import RESULTS, _codec_arg, png_bytes, start_server, test_image

ROOT = Path(__file__).parent.parent

# ---- atheris ------------------------------------------------------------------------------

CODEC = None
HEADER = None  # the header of a valid stream, for the garbage-payload target
#: make every input "crash", to check that a crash fails the run (tests/test_fuzz.py)
SELFTEST = os.environ.get("MOSTORE_FUZZ_SELFTEST") == "1"


def _one_input(blob: bytes) -> None:
    from mostore import data as image_data
    from mostore.codec import bitstream
    from mostore.errors import MostoreError

    if not blob:
        return
    if SELFTEST:
        raise RuntimeError("self-test: an untyped error")
    target, payload = blob[0] % 4, blob[1:]
    try:
        if target == 0:
            CODEC.latents(payload)
        elif target == 1:
            CODEC.decode(payload)
        elif target == 2:
            image_data.load_image(payload, max_pixels=1 << 20)
        else:
            cut = payload[0] if payload else 0
            CODEC.latents(bitstream.pack(HEADER, payload[1 : 1 + cut], payload[1 + cut :]))
    except MostoreError:
        pass


def _seed_corpus(folder: Path, codec) -> None:
    from PIL import Image

    from mostore.codec import bitstream

    folder.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate([(16, 16), (40, 24), (64, 48)]):
        img = test_image(i, 0, size)
        stream = codec.encode(img)
        (folder / f"latents-{i}").write_bytes(b"\0" + stream)
        (folder / f"decode-{i}").write_bytes(b"\1" + stream)
        (folder / f"png-{i}").write_bytes(b"\2" + png_bytes(img))
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=70)
        (folder / f"jpeg-{i}").write_bytes(b"\2" + buf.getvalue())
        _, z, y = bitstream.unpack(stream)
        if len(z) < 256:
            (folder / f"payload-{i}").write_bytes(b"\3" + bytes([len(z)]) + z + y)


def _atheris_worker(codec_path: str, runs: int, seed: int) -> None:
    """The fuzzing process itself (libFuzzer ends it: exit code 0 when every run passed)."""
    global CODEC, HEADER
    import atheris

    with atheris.instrument_imports(include=["mostore"]):
        import mostore.codec.bitstream  # noqa: F401
        import mostore.data  # noqa: F401
        from mostore.codec.model import Codec
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="mostore-fuzz-"))
    atexit.register(shutil.rmtree, work, True)
    CODEC = Codec.load(codec_path)
    _seed_corpus(work / "corpus", CODEC)
    HEADER = mostore.codec.bitstream.unpack(CODEC.encode(test_image(0, 0, (40, 24))))[0]
    atheris.Setup(
        [
            sys.argv[0],
            str(work / "corpus"),
            f"-artifact_prefix={work}/",  # a crashing input is written there, not into the checkout
            f"-runs={runs}",
            f"-seed={seed}",
            "-timeout=10",
            "-rss_limit_mb=4096",
            "-max_len=65536",
        ],
        _one_input,
    )
    atheris.Fuzz()


def run_atheris(codec_path: str, runs: int, seed: int = 1) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.fuzz",
            "--atheris-worker",
            "--codec",
            codec_path,
            "--runs",
            str(runs),
            "--seed",
            str(seed),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    out = proc.stdout + proc.stderr
    done = re.search(r"Done (\d+) runs in (\d+) second", out)
    return {
        "runs": int(done.group(1)) if done else 0,
        "seconds": round(time.perf_counter() - t0, 1),
        "returncode": proc.returncode,
        "ok": proc.returncode == 0 and done is not None and int(done.group(1)) == runs,
        "log_tail": out[-2000:] if proc.returncode else "",
    }


# ---- schemathesis -------------------------------------------------------------------------


def run_schemathesis(url: str, examples: int, existing_table: str) -> dict:
    """Generated requests for every operation of the server's OpenAPI schema; counts 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    operations = [r.ok() for r in schemathesis.openapi.from_url(url + "/openapi.json").get_all_operations()]
    statuses: dict[int, int] = {}
    failures = []

    for op in operations:

        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def fuzz(case):
            responses = [case.call(base_url=url)]
            if "name" in (case.path_parameters or {}) and case.method.upper() != "DELETE":
                case.path_parameters["name"] = existing_table
                responses.append(case.call(base_url=url))
            for r in responses:
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                assert r.status_code < 500, f"{case.method} {case.formatted_path}: {r.status_code} {r.text[:300]}"

        try:
            fuzz()
        except AssertionError as exc:  # hypothesis has shrunk it to a minimal failing request
            failures.append(str(exc)[:500])
    return {
        "operations": len(operations),
        "requests": sum(statuses.values()),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500),
        "failures": failures,
        "ok": not failures,
    }


def fuzz_table(db_path: Path, codec_path: str, name: str = "fuzz") -> None:
    import mostore

    tbl = mostore.connect(db_path, codec=mostore.Codec.load(codec_path)).create_table(name)
    tbl.add([test_image(5, j) for j in range(6)], metadata=[{"label": "ab"[j % 2]} for j in range(6)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200_000, help="atheris inputs")
    ap.add_argument("--examples", type=int, default=100, help="schemathesis examples per operation")
    ap.add_argument("--codec", default="default", help="shipped weights name, a checkpoint path, or 'tiny'")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz.json")
    ap.add_argument("--atheris-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.atheris_worker:
        _atheris_worker(args.codec, args.runs, args.seed)
        return 0
    work = Path(tempfile.mkdtemp(prefix="mostore-fuzz-"))
    try:
        codec_path = _codec_arg(args.codec, work)
        fuzz_table(work / "db", codec_path)
        proc, url = start_server(work / "db", codec_path)
        try:
            api = run_schemathesis(url, args.examples, "fuzz")
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
        result = {"codec": args.codec, "atheris": run_atheris(codec_path, args.runs, args.seed), "schemathesis": api}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    a, s = result["atheris"], result["schemathesis"]
    print(f"atheris: {a['runs']} inputs in {a['seconds']} s, exit {a['returncode']}")
    print(
        f"schemathesis: {s['operations']} operations, {s['requests']} requests, statuses {s['statuses']},"
        f" 5xx {s['server_errors']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    ok = a["ok"] and s["ok"]
    print(f"wrote {args.out}; {'all passed' if ok else 'FAILURES'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
